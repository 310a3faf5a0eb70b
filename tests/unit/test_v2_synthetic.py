"""Synthetic checkpoints for the v2 variants the fixture lacks.

Each is built here (random weights, the trainer's key layout, saved with its argument dict),
then: the loader infers the same config, computes the same function, cached == full step by
step on a ragged batch, batched == alone; and each new piece of math is checked against the
plain reference implementations in tests/helpers.py.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import torch

import swamla_tui
from swamla_tui.engine.decoder import BatchDecoder
from swamla_tui.model.deltanet import DeltaNetBlock
from swamla_tui.model.mla import MLABlock
from swamla_tui.model.swa import SWABlock
from swamla_tui.model.token_map import token_mapping
from swamla_tui.model.transformer import SWAMLA
from tests.support.helpers import (
    V2_TOKENIZER,
    V2_VARIANTS,
    block_tensors,
    layer,
    random_init_,
    ref_deltanet,
    ref_engram,
    ref_mla,
    ref_moe,
    v2_args,
    v2_state_dict,
    v2_variant_config,
)

GREEDY = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0}


@lru_cache(maxsize=1)
def _vocab() -> dict[str, int]:
    from transformers import AutoTokenizer

    return dict(AutoTokenizer.from_pretrained(str(V2_TOKENIZER)).get_vocab())


class Built:
    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.cfg = v2_variant_config(name)
        self.model = SWAMLA(self.cfg).eval()
        random_init_(self.model, seed=V2_VARIANTS.index(name))
        if name == "bf16_experts":  # the trainer's bf16 experts: the function of the rounded values
            with torch.no_grad():
                for k, p in self.model.named_parameters():
                    if ".ffn.experts." in k:
                        p.copy_(p.bfloat16().float())
        if self.cfg.engram is not None:
            self.model.set_token_mapping(token_mapping(_vocab(), self.cfg.vocab_size))
        self.sd = v2_state_dict(
            self.model, old_layout=name == "old_layout_g5", bf16_experts=name == "bf16_experts"
        )
        if self.cfg.swa_flash:  # G3 flash SWA layers carry a causal_mask buffer, no mask
            bs = self.cfg.block_size
            for i, kind in enumerate(self.cfg.layer_kinds):
                if kind == "swa":
                    self.sd[f"_orig_mod.transformer.h.{i}.attn.causal_mask"] = torch.ones(bs, bs)
        self.path = folder / f"{name}.pt"
        torch.save(
            {
                "model_state_dict": self.sd,
                "optimizer_state_dict": [{"state": {}, "param_groups": []}],
                "step": 7,
                "config": v2_args(self.cfg),
                "total_tokens": 1000,
            },
            self.path,
        )
        tok: Any = V2_TOKENIZER if self.cfg.engram is not None else False
        self.lm = swamla_tui.load(self.path, tokenizer=tok)
        self.plain = {k.removeprefix("_orig_mod."): v for k, v in self.sd.items()}

    def ids(self, b: int, t: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, self.cfg.vocab_size, (b, t), generator=g)


_BUILT: dict[str, Built] = {}


@pytest.fixture(params=V2_VARIANTS)
def built(request, tmp_path_factory) -> Built:
    name = request.param
    if name not in _BUILT:
        _BUILT[name] = Built(name, tmp_path_factory.mktemp(name))
    return _BUILT[name]


def _get(name: str, tmp_path_factory) -> Built:
    if name not in _BUILT:
        _BUILT[name] = Built(name, tmp_path_factory.mktemp(name))
    return _BUILT[name]


def test_loads_the_same_config_and_function(built):
    got = built.lm.config.to_dict()
    want = built.cfg.to_dict()
    if built.name == "old_layout_g5":
        want["moe"]["expert_layout"] = "old"
    assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    ids = built.ids(2, 50)
    with torch.no_grad():
        ref = built.model(ids)
    assert float((built.lm.logits(ids) - ref).abs().max()) <= 1e-5
    assert built.lm.meta["generation"].startswith(built.cfg.generation)
    assert "\n" not in built.lm.summary()


def test_cached_decode_matches_full_forward_ragged(built):
    ids = built.ids(2, 60, seed=2)
    ref = built.lm.logits(ids)
    dec = BatchDecoder(built.lm.model, max_length=96)
    errs = []
    with torch.inference_mode():
        lg = dec.prefill([ids[0, :9].tolist(), ids[1, :3].tolist()], capacity=80)
        errs += [(lg[0] - ref[0, 8]).abs().max(), (lg[1] - ref[1, 2]).abs().max()]
        for s in range(40):
            lg = dec.step(torch.tensor([ids[0, 9 + s].item(), ids[1, 3 + s].item()]))
            errs += [(lg[0] - ref[0, 9 + s]).abs().max(), (lg[1] - ref[1, 3 + s]).abs().max()]
    assert max(float(e) for e in errs) <= 1e-4


def test_batched_equals_alone(built):
    ids = built.ids(3, 12, seed=3)
    prompts = [ids[0].tolist(), ids[1, :4].tolist(), ids[2, :8].tolist()]
    together = built.lm.generate_ids(prompts, max_new_tokens=12, **GREEDY)
    alone = [built.lm.generate_ids([p], max_new_tokens=12, **GREEDY)[0] for p in prompts]
    assert together == alone


# ------------------------------------------------------------------ one hand check per piece
@pytest.mark.parametrize(
    "name", ["latent_deltanet", "latent_shared_qk", "shared_qk_standard_moe", "bf16_experts"]
)
def test_deltanet_layer_against_the_written_out_recurrence(name, tmp_path_factory):
    b = _get(name, tmp_path_factory)
    u = torch.randn(1, 23, b.cfg.n_embd, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = layer(b.lm.model, 1, DeltaNetBlock).attn(u)[0]
    want = ref_deltanet(block_tensors(b.plain, 1, "attn"), u[0], b.cfg.deltanet.n_head)
    assert float((got - want).abs().max()) <= 1e-5


def test_wedlm_wrapper_against_a_direct_computation(tmp_path_factory):
    b = _get("wedlm", tmp_path_factory)
    t = block_tensors(b.plain, 0, "attn")
    u = torch.randn(1, 20, b.cfg.n_embd, generator=torch.Generator().manual_seed(5))
    pos = torch.arange(20)
    with torch.no_grad():
        got = layer(b.lm.model, 0, DeltaNetBlock).attn(u, pos[None])[0]
    rows = t["position_embeddings.weight"].shape[0]
    p = t["position_embeddings.weight"][pos.clamp(max=rows - 1)]
    gate = torch.sigmoid(u[0] @ t["position_gate.0.weight"].T + t["position_gate.0.bias"])
    u2 = torch.nn.functional.layer_norm(
        u[0] + gate * p, (b.cfg.n_embd,), t["pos_norm.weight"], t["pos_norm.bias"], 1e-5
    )
    inner = {k.removeprefix("deltanet."): v for k, v in t.items() if k.startswith("deltanet.")}
    want = ref_deltanet(inner, u2, b.cfg.deltanet.n_head)
    assert float((got - want).abs().max()) <= 1e-5


@pytest.mark.parametrize(
    "name", ["latent_deltanet", "shared_qk_standard_moe", "old_layout_g5", "bf16_experts"]
)
def test_moe_against_a_token_by_token_computation(name, tmp_path_factory):
    b = _get(name, tmp_path_factory)
    x = torch.randn(20, b.cfg.n_embd, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        many = layer(b.lm.model, 2, MLABlock).ffn(x[None])[0]  # grouped per expert
        one = torch.cat([layer(b.lm.model, 2, MLABlock).ffn(x[i : i + 1]) for i in range(20)])
    layout = "old" if name == "old_layout_g5" else "new"
    want = ref_moe(block_tensors(b.plain, 2, "ffn"), x, b.cfg.moe.top_k, layout)
    assert float((many - want).abs().max()) <= 1e-5
    assert float((one - want).abs().max()) <= 1e-5  # the embedding_bag path


def test_engram_against_a_direct_computation(tmp_path_factory):
    b = _get("engram", tmp_path_factory)
    ids = b.ids(1, 30, seed=7)
    x = torch.randn(1, 30, b.cfg.n_embd, generator=torch.Generator().manual_seed(8))
    m = b.lm.model
    assert m.engram_map is not None
    ext = torch.cat((torch.zeros(1, b.cfg.engram.history, dtype=torch.long), m.engram_map[ids]), 1)
    with torch.no_grad():
        got = layer(m, 5, MLABlock).engram(x, ext)[0]
    mapping = token_mapping(_vocab(), b.cfg.vocab_size)
    want = ref_engram(
        block_tensors(b.plain, 5, "engram"), x[0], ids[0].tolist(), mapping, [2, 4], 2
    )
    assert float((got - want).abs().max()) <= 1e-5


def test_engram_needs_the_tokenizer(tmp_path_factory):
    b = _get("engram", tmp_path_factory)
    with pytest.raises(swamla_tui.SwamlaError) as ei:
        swamla_tui.load(b.path, tokenizer=False)
    msg = str(ei.value)
    assert "\n" not in msg and "Engram" in msg and "tokenizer" in msg
    mapping = token_mapping(_vocab(), b.cfg.vocab_size).tolist()
    lm = swamla_tui.load(b.path, tokenizer=False, engram_mapping=mapping)  # or supply the map
    ids = b.ids(1, 20)
    assert float((lm.logits(ids) - b.lm.logits(ids)).abs().max()) == 0.0


@pytest.mark.parametrize(("name", "by_position"), [("q_lora_g4_dense", False), ("engram", True)])
def test_mla_q_pe_rotation_by_generation(name, by_position, tmp_path_factory):
    b = _get(name, tmp_path_factory)
    c = b.cfg
    x = torch.randn(1, 17, c.n_embd, generator=torch.Generator().manual_seed(9))
    m = b.lm.model
    with torch.no_grad():
        got = layer(m, 5, MLABlock).attn(x, m.rope_mla[None, :17])[0]
    t = block_tensors(b.plain, 5, "attn")
    dims = (c.n_head, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim)
    want = ref_mla(t, x[0], *dims, by_position=by_position)
    other = ref_mla(t, x[0], *dims, by_position=not by_position)
    assert float((got - want).abs().max()) <= 1e-5
    assert float((got - other).abs().max()) > 1e-3


def test_flash_swa_applies_the_per_layer_window(tmp_path_factory):
    """Output at position i depends on inputs i - w..i only (w = the layer's scaled window)."""
    b = _get("flash_swa_g3", tmp_path_factory)
    attn = layer(b.lm.model, 0, SWABlock).attn
    w = attn.fixed_window
    assert w == max(1, int(b.cfg.swa_window * 0.5))
    cs = b.lm.model.rope_swa[None, :30]
    x = torch.randn(1, 30, b.cfg.n_embd, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        base = attn(x, cs)[0, 25]
        far, near = x.clone(), x.clone()
        far[0, 25 - w - 1] += 1.0
        near[0, 25 - w] += 1.0
        assert torch.equal(attn(far, cs)[0, 25], base)
        assert float((attn(near, cs)[0, 25] - base).abs().max()) > 1e-4
    assert "flash SWA" in b.lm.card()["SWA"]


def test_hub_layout_folder(tmp_path, tmp_path_factory):
    """checkpoint_tokens_* folders with model_state_dict, config.json and the tokenizer."""
    import json

    b = _get("latent_deltanet", tmp_path_factory)
    for tokens, label in ((500_000, "500k"), (5_000_000, "5M")):
        folder = tmp_path / f"checkpoint_tokens_{label}_loss_2.3456"
        folder.mkdir()
        torch.save(
            {
                "model_state_dict": b.sd,
                "config": v2_args(b.cfg),
                "total_tokens": tokens,
                "val_loss": 2.3456,
                "optimizer_state_dict": [{"state": {}, "param_groups": []}],
                "step": 9,
            },
            folder / "pytorch_model.bin",
        )
        info = {"model_type": "swa_mla", "total_tokens": tokens, "val_loss": 2.3456}
        info["training_config"] = v2_args(b.cfg)
        (folder / "config.json").write_text(json.dumps(info))
        for f in V2_TOKENIZER.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
    lm = swamla_tui.load(tmp_path)
    assert lm.meta["format"] == "hub checkpoint" and lm.meta["total_tokens"] == 5_000_000
    assert "5M" in lm.source and lm.tokenizer is not None
    ids = b.ids(1, 20)
    assert float((lm.logits(ids) - b.lm.logits(ids)).abs().max()) == 0.0
