"""The v2 fixture (HEAD trainer, G6: DeltaNet + MLA, latent MoE, bf16 experts).

Parity with the original code's float32 forward at every position, greedy tokens of its
generation loop, cached == full step by step on a ragged batch, batched == alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pytest
import torch

import swamla_tui
from swamla_tui.base.errors import CheckpointError
from swamla_tui.checkpoint.reader import read_checkpoint
from tests.support.helpers import TEST_DEVICE, V2_CKPT, V2_EXPECTED, ragged_decode_max_error

TOL = 1e-4
GREEDY = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0}


@lru_cache(maxsize=1)
def _expected() -> dict[str, Any]:
    expected: dict[str, Any] = torch.load(V2_EXPECTED, map_location="cpu", weights_only=True)
    return expected


@pytest.fixture(scope="module")
def lm():
    return swamla_tui.load(V2_CKPT, tokenizer=False, device=TEST_DEVICE)


def test_logits_match_the_original_at_every_position(lm):
    exp = _expected()
    got = lm.logits(exp["input_ids"]).cpu()
    per_pos = (got - exp["logits"]).abs().amax(dim=-1)  # [2, 120]
    assert per_pos.shape == (2, 120)
    assert float(per_pos.max()) <= TOL, f"max abs diff {float(per_pos.max()):.3g}"
    # the GPU-rounded reference is a different function: we must not be closer to it
    gpu = (got - exp["logits_gpu_bf16_deltanet"]).abs().max()
    assert float(gpu) > 10 * float(per_pos.max())


def test_config_inferred_from_the_weights_and_config(lm):
    c = lm.config
    assert c.layer_kinds == ["deltanet", "deltanet", "mla", "deltanet", "deltanet", "mla"]
    assert (c.n_layer, c.n_embd, c.n_head, c.vocab_size, c.block_size) == (6, 64, 6, 384, 128)
    assert c.generation == "G6" and c.q_pe_by_position and c.silu_first
    assert c.kv_ranks == [0, 0, 35, 0, 0, 64]  # per-layer MLA ranks from kv_norm
    assert (c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim) == (16, 8, 12)
    d = c.deltanet
    assert d is not None and (d.n_head, d.head_dim, d.proj_dim) == (6, 10, 60)
    assert (d.latent_dim, d.share_qk, d.conv_kernel) == (0, False, 4)
    m = c.moe
    assert m is not None and m.latent and (m.n_experts, m.top_k, m.width) == (32, 8, 16)
    assert (m.n_shared, m.shared_dim, m.expert_dim, m.expert_layout) == (1, 64, 16, "new")
    assert c.engram is None
    assert lm.n_params == 423886 == int(_expected()["params"])
    # active: 24 of the 32 routed experts of each of the 2 MoE layers are idle per token
    idle = 2 * 24 * (16 * 32 + 16 * 16)
    assert lm.model.active_params() == 423886 - idle
    assert lm.meta["format"] == "training checkpoint" and lm.meta["step"] == 5000
    assert lm.meta["total_tokens"] == 5120000
    assert lm.meta["generation"].startswith("G6: config has use_triton_kernels")
    assert not any("mixed stored dtypes" in n for n in lm.notices)  # bf16 experts are normal


def test_summary_and_card_describe_the_architecture(lm):
    s = lm.summary()
    assert "4 DeltaNet + 2 MLA" in s and "G6" in s and "\n" not in s
    assert "SWA" not in s
    card = lm.card()
    assert card["generation"].startswith("G6")
    assert "4 DeltaNet + 2 MLA" in card["layers"]
    assert "32 routed experts" in card["MoE"] and "top-8" in card["MoE"]
    assert card["active parameters"] == f"{lm.model.active_params():,} per token"
    assert "SWA" not in card
    assert card["Engram"] == "none"


def test_greedy_matches_the_original_generation_loop(lm):
    exp = _expected()
    out = lm.generate_ids(exp["prompt_ids"].tolist(), max_new_tokens=40, **GREEDY)
    assert torch.equal(torch.tensor(out), exp["greedy_ids"])


def test_batched_equals_alone(lm):
    exp = _expected()
    prompts = [exp["prompt_ids"][0, :16].tolist(), exp["prompt_ids"][1, :5].tolist()]
    together = lm.generate_ids(prompts, max_new_tokens=24, **GREEDY)
    alone = [lm.generate_ids([p], max_new_tokens=24, **GREEDY)[0] for p in prompts]
    assert together == alone


def test_cached_decode_matches_full_forward_every_step_ragged(lm):
    """Left-padded rows of different lengths, prefill then one token per step."""
    assert ragged_decode_max_error(lm, _expected()["input_ids"]) <= TOL


def test_prefill_in_pieces_equals_one_prefill(lm):
    """The chunked DeltaNet form continues from a kept state (several tokens per call)."""
    ids = _expected()["input_ids"][:1, :100].to(lm.device)
    ref = lm.logits(ids).cpu()
    m = lm.model
    with torch.inference_mode():
        cache = m.setup_cache(1, 128)
        outs = []
        for a, b in ((0, 37), (37, 38), (38, 100)):
            pos = torch.arange(a, b, device=lm.device)[None]
            ctx = m.step_context(pos, cache)
            outs.append(m.forward_cached(ids[:, a:b], pos, cache, ctx).float().cpu())
        assert any(float(t.abs().sum()) > 0 for t in cache.recurrent())
        cache.reset()
    assert float((torch.cat(outs, 1) - ref).abs().max()) <= TOL
    assert all(float(t.abs().sum()) == 0 for t in cache.recurrent())


def test_generation_override_changes_the_semantics(tmp_path):
    """A bare state dict: detected G6 (bf16 experts); G5 moves the dense-MLP SiLU half."""
    sd = read_checkpoint(V2_CKPT)["model_state_dict"]
    p = tmp_path / "bare.pt"
    torch.save(dict(sd), p)
    exp = _expected()
    # no config: the MoE top-k (in no weight) falls back to the trainer's default 3 x 4
    dflt = swamla_tui.load(p, tokenizer=False)
    assert dflt.config.moe is not None and dflt.config.moe.top_k == 12
    assert any("top-12 is the trainer's default" in n for n in dflt.notices)
    auto = swamla_tui.load(p, tokenizer=False, train_args={"n_activated": 2})
    assert auto.config.generation == "G6" and "bfloat16" in auto.meta["generation"]
    assert float((auto.logits(exp["input_ids"]) - exp["logits"]).abs().max()) <= TOL
    g5 = swamla_tui.load(p, tokenizer=False, generation="G5", train_args={"n_activated": 2})
    assert g5.config.generation == "G5" and "set by the user" in g5.meta["generation"]
    assert g5.config.q_pe_by_position and not g5.config.silu_first
    assert float((g5.logits(exp["input_ids"]) - exp["logits"]).abs().max()) > 1e-2
    with pytest.raises(CheckpointError) as ei:
        swamla_tui.load(p, tokenizer=False, generation="G9")
    assert "generation must be auto or one of G1" in str(ei.value)


def test_statistics_are_skipped_and_expert_bias_is_kept(tmp_path, lm):
    keys = set(lm.model.state_dict())
    assert not any("load_history" in k or "update_count" in k for k in keys)
    assert "transformer.h.2.ffn.router.expert_bias" in keys
    ck = dict(read_checkpoint(V2_CKPT))
    sd = dict(ck["model_state_dict"])
    for k in list(sd):
        if k.endswith("expert_bias"):
            sd[k] = torch.zeros_like(sd[k])
    ck["model_state_dict"] = sd
    p = tmp_path / "no_bias.pt"
    torch.save(ck, p)
    exp = _expected()
    zero = swamla_tui.load(p, tokenizer=False)
    assert float((zero.logits(exp["input_ids"]) - exp["logits"]).abs().max()) > 1e-3
