"""Synthetic G7 checkpoints for what the public fixture lacks: YaRN's softmax factor, fused
DeltaNet keys with shared q/k and latent projections, unfused keys with value embeddings,
an instruct vocabulary (V0 + 2, ChatML), whole-model bf16 storage, EMA overlay; and the
refusal of tensors no generation knows.

Each checkpoint is written the trainer's way from a model built here with random weights;
loading it must give that model's function (the key handling and config inference are
what is tested), and the pieces with no fixture are checked against direct computations.
"""

from __future__ import annotations

import copy
import math
from functools import cache
from pathlib import Path

import pytest
import torch

import swamla_tui
from swamla_tui.base.errors import CheckpointError
from swamla_tui.engine.decoder import BatchDecoder
from swamla_tui.model.config import FoPEConfig
from swamla_tui.model.g7 import FoPE, split_fused_deltanet
from swamla_tui.model.mla import MLABlock
from swamla_tui.model.transformer import SWAMLA
from swamla_tui.ui.model_header import header_line
from tests.support.g7 import (
    G7_CKPT,
    G7_TOKENIZER,
    G7_VARIANTS,
    TOL,
    build_g7,
    expected,
    trainer_state_dict,
    write_g7,
)
from tests.support.helpers import layer


def _ids(vocab: int, b: int = 2, t: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


@cache
def _built(name: str, folder: str) -> tuple[SWAMLA, Path]:
    model = build_g7(name)
    if name == "bf16_whole":  # what the file holds: bf16-rounded values
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.bfloat16().float())
            for n, b in model.named_buffers():
                if b.is_floating_point() and n.endswith("expert_bias"):
                    b.copy_(b.bfloat16().float())
    path = write_g7(Path(folder), name, model)
    return model, path


@pytest.fixture(scope="module", params=G7_VARIANTS)
def variant(request, tmp_path_factory):
    name = request.param
    model, path = _built(name, str(tmp_path_factory.mktemp(name)))
    lm = swamla_tui.load(path)
    if model.cfg.engram is not None:  # the same token map on both sides
        assert lm.model.engram_map is not None
        model.set_token_mapping(lm.model.engram_map)
    return name, model, lm


def test_loads_the_same_config_and_function(variant):
    name, model, lm = variant
    want = copy.deepcopy(model.cfg)
    assert want.deltanet is not None and lm.config.deltanet is not None
    want.deltanet.fused_keys = name != "instruct_unfused"
    assert lm.config == want
    assert lm.config.generation == "G7"
    ids = _ids(lm.config.vocab_size)
    with torch.inference_mode():
        ref = model(ids)
    assert float((lm.logits(ids) - ref).abs().max()) <= 1e-5
    assert not any("unknown" in n for n in lm.notices)  # load_history: skipped silently


def test_cached_decode_matches_full_forward_ragged(variant):
    _, _, lm = variant
    ids = _ids(lm.config.vocab_size, t=60, seed=2)
    ref = lm.logits(ids)
    dec = BatchDecoder(lm.model, max_length=96)
    errs = []
    with torch.inference_mode():
        lg = dec.prefill([ids[0, :9].tolist(), ids[1, :2].tolist()], capacity=70).float()
        errs += [(lg[0] - ref[0, 8]).abs().max(), (lg[1] - ref[1, 1]).abs().max()]
        for s in range(40):
            a, b = 9 + s, 2 + s
            lg = dec.step(torch.tensor([ids[0, a].item(), ids[1, b].item()])).float()
            errs += [(lg[0] - ref[0, a]).abs().max(), (lg[1] - ref[1, b]).abs().max()]
    assert max(float(e) for e in errs) <= TOL


def test_batched_equals_alone(variant):
    _, _, lm = variant
    prompts = [_ids(lm.config.vocab_size, 1, 12, 3)[0].tolist(), [5, 9, 11]]
    kw = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0}
    together = lm.generate_ids(prompts, max_new_tokens=16, **kw)
    assert together == [lm.generate_ids([p], max_new_tokens=16, **kw)[0] for p in prompts]


def test_yarn_factor_is_the_only_yarn_effect(tmp_path):
    """0.1·ln(4) + 1 on MLA's softmax scale; rebuilt without it, the function changes."""
    model, path = _built("yarn_fused_shared_latent", str(tmp_path / "y"))
    lm = swamla_tui.load(path)
    f = 0.1 * math.log(4.0) + 1.0
    assert lm.config.attn_factor == pytest.approx(f)
    for i in (2, 5):
        attn = layer(lm.model, i, MLABlock).attn
        assert attn.scale == pytest.approx((8 + 20) ** -0.5 * f)
    assert lm.card()["YaRN"].startswith("softmax factor 1.139")
    # YaRN off in the config: same weights, another function
    off = swamla_tui.load(path, train_args={"yarn_enabled": False})
    assert off.config.attn_factor == 1.0
    ids = _ids(384)
    assert float((off.logits(ids) - lm.logits(ids)).abs().max()) > 1e-3


def test_mla_scale_and_value_embeddings_against_a_direct_computation(tmp_path):
    """One MLA layer (YaRN factor, FoPE, value embeddings) computed from its weights here."""
    _, path = _built("yarn_fused_shared_latent", str(tmp_path / "y"))
    lm = swamla_tui.load(path)
    blk = layer(lm.model, 2, MLABlock)
    a = blk.attn
    b, t, h, dn, dr, dv = 1, 7, 5, 8, 20, 6
    x = torch.randn(b, t, 48, generator=torch.Generator().manual_seed(4))
    ids = torch.tensor([[1, 50, 383, 7, 7, 200, 0]])
    pos = torch.arange(t)[None]
    with torch.inference_mode():
        got = a(x, blk.rope_for(lm.model.rope_mla[None, :t], pos), ids)
        assert a.rope is not None
        cs = a.rope.table(pos)  # checked against the spec's loops below
        q = (x @ a.wq.weight.T).view(b, t, h, dn + dr)
        kv_a = x @ a.wkv_a.weight.T
        c = torch.nn.functional.layer_norm(kv_a[..., :-dr], (kv_a.shape[-1] - dr,),
                                           a.kv_norm.weight, a.kv_norm.bias, 1e-5)  # fmt: skip
        kv = (c @ a.wkv_b.weight.T).view(b, t, h, dn + dv)

        def rot(z: torch.Tensor, cs_: torch.Tensor) -> torch.Tensor:
            z0, z1 = z[..., 0::2], z[..., 1::2]
            co, si = cs_[..., 0], cs_[..., 1]
            return torch.stack((z0 * co - z1 * si, z1 * co + z0 * si), -1).flatten(-2)

        q_pe = rot(q[..., dn:], cs[:, :, None])
        k_pe = rot(kv_a[..., -dr:], cs)
        gate = 2 * torch.sigmoid(x[..., :32] @ a.ve_gate.weight.T)  # [B, T, 1]
        v = kv[..., dn:] + (gate * a.value_embeds.weight[ids]).view(b, t, h, dv)
        scale = (dn + dr) ** -0.5 * (0.1 * math.log(4.0) + 1.0)
        out = torch.zeros(b, t, h, dv)
        for i in range(t):
            for hh in range(h):
                s = torch.stack([
                    (q[0, i, hh, :dn] @ kv[0, j, hh, :dn] + q_pe[0, i, hh] @ k_pe[0, j]) * scale
                    for j in range(i + 1)
                ])  # fmt: skip
                out[0, i, hh] = torch.softmax(s, 0) @ v[0, : i + 1, hh]
        want = out.reshape(b, t, h * dv) @ a.wo.weight.T
    assert float((got - want).abs().max()) <= 1e-5


def test_fope_table_against_the_spec_loops():
    """formats G7 §6 written out: floor pairs unrotated, harmonics, sin-only normalisation."""
    f = FoPE(FoPEConfig(n_floor=2, n_active=6, n_harmonics=4, theta=10000.0), rope_dim=16)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        f.sin_coef.copy_(0.3 * torch.randn(6, 4, generator=g))
        f.cos_coef.copy_(0.3 * torch.randn(6, 4, generator=g))
    pos = torch.tensor([0, 1, 5, 90])
    with torch.no_grad():
        got = f.table(pos).double()
    sc, cc = f.sin_coef.detach().double(), f.cos_coef.detach().double()
    nf = max(1.0, math.sqrt(1 + 3 * float(sc[:, 1:].pow(2).mean())))
    for pi, t in enumerate(pos.tolist()):
        for j in range(8):
            if j < 2:
                assert got[pi, j].tolist() == [1.0, 0.0]
                continue
            a, inv = j - 2, 10000.0 ** (-2 * j / 16)
            s = sum((1.0 if h == 1 else float(sc[a, h - 1])) * math.sin(h * t * inv)
                    for h in range(1, 5)) / nf  # fmt: skip
            c = sum((1.0 if h == 1 else float(cc[a, h - 1])) * math.cos(h * t * inv)
                    for h in range(1, 5)) / nf  # fmt: skip
            assert abs(float(got[pi, j, 0]) - c) < 2e-5 and abs(float(got[pi, j, 1]) - s) < 2e-5


def test_fused_keys_split_in_the_spec_order():
    h, p, k = 3, 6, 4
    gb = torch.arange(2 * h * 5, dtype=torch.float32).view(2 * h, 5)
    conv = torch.arange(3 * p * k, dtype=torch.float32).view(3 * p, 1, k)
    out = split_fused_deltanet({"transformer.h.0.attn.g_beta_proj.weight": gb,
                                "transformer.h.0.attn.qkv_conv.weight": conv,
                                "transformer.h.0.attn.qkv_conv.bias": conv[:, 0, 0]})  # fmt: skip
    assert torch.equal(out["transformer.h.0.attn.g_proj.weight"], gb[:h])
    assert torch.equal(out["transformer.h.0.attn.beta_proj.weight"], gb[h:])
    for i, x in enumerate("qkv"):
        assert torch.equal(
            out[f"transformer.h.0.attn.{x}_conv.conv.weight"], conv[i * p : (i + 1) * p]
        )
        assert torch.equal(
            out[f"transformer.h.0.attn.{x}_conv.conv.bias"], conv[i * p : (i + 1) * p, 0, 0]
        )


def test_instruct_vocabulary_gets_chatml(tmp_path):
    """V0 + 2 rows; the base tokenizer beside the file gets the two ChatML tokens (ids V0,
    V0 + 1), so the chat format is ChatML without --chatml."""
    from swamla_tui.chat.template import chat_format_of, with_chat_format

    _, path = _built("instruct_unfused", str(tmp_path / "i"))
    lm = swamla_tui.load(path)
    assert lm.config.vocab_size == 386 and lm.config.ve_rows[2] == 50304
    assert lm.encode("<|im_start|>") == [384] and lm.encode("<|im_end|>") == [385]
    assert any("ChatML tokens" in n for n in lm.notices)
    card = lm.card()
    assert card["checkpoint type"] == "instruct"
    assert card["pretrain / instruct tokens"] == "2,000,000 / 1,000,000"
    fm = with_chat_format(lm, chatml=False, system=None)
    assert chat_format_of(fm).name == "chatml"


def test_ema_overlay_keeps_the_raw_embedding(tmp_path):
    model = build_g7("bf16_whole")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.bfloat16().float())
    ema_model = build_g7("bf16_whole", seed=9)
    with torch.no_grad():
        for p in ema_model.parameters():
            p.copy_(p.bfloat16().float())
    ema = {
        k.removeprefix("_orig_mod."): v
        for k, v in trainer_state_dict(ema_model, fused=True).items()
    }
    params = {n for n, _ in model.named_parameters()} | {"transformer.h.0.attn.g_beta_proj.weight"}
    ema = {k: v for k, v in ema.items() if k in params or "g_beta_proj" in k or "qkv_conv" in k}
    path = write_g7(tmp_path, "bf16_whole", model, ema=ema)
    raw = swamla_tui.load(path)
    with_ema = swamla_tui.load(path, ema=True)
    ref = copy.deepcopy(ema_model)
    with torch.no_grad():
        ref.transformer.wte.weight.copy_(model.transformer.wte.weight)  # raw embedding wins
        for (n, b), (_, b0) in zip(ref.named_buffers(), model.named_buffers(), strict=True):
            if not n.endswith(("inv_freq", "rope_swa", "rope_mla", "q_rope")):
                b.copy_(b0)  # buffers stay raw
    ref.set_token_mapping(with_ema.model.engram_map)
    ids = _ids(384)
    with torch.inference_mode():
        assert float((with_ema.logits(ids) - ref(ids)).abs().max()) <= 1e-5
    model.set_token_mapping(raw.model.engram_map)
    with torch.inference_mode():
        assert float((raw.logits(ids) - model(ids)).abs().max()) <= 1e-5
    assert raw.card()["weights"].startswith("trained")


def _fixture_with(tmp_path: Path, extra: dict[str, torch.Tensor]) -> Path:
    from swamla_tui.checkpoint.reader import read_checkpoint

    ck = dict(read_checkpoint(G7_CKPT))
    ck["model_state_dict"] = {**ck["model_state_dict"], **extra}
    p = tmp_path / "g7_base_small" / "ck.pt"
    p.parent.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copytree(G7_TOKENIZER, p.parent / "tok384")
    torch.save(ck, p)
    return p


def test_an_unknown_tensor_refuses_the_load_and_ignore_unknown_keeps_a_warning(tmp_path):
    p = _fixture_with(tmp_path, {"_orig_mod.transformer.h.0.attn.mystery.weight": torch.ones(4)})
    with pytest.raises(CheckpointError) as ei:
        swamla_tui.load(p)
    msg = str(ei.value)
    assert "transformer.h.0.attn.mystery.weight is not part of any SWA-MLA generation" in msg
    assert "upgrade swamla-tui, or pass --ignore-unknown-weights" in msg and "\n" not in msg
    lm = swamla_tui.load(p, ignore_unknown=True)
    assert any(n.startswith("WARNING: running without 1 stored tensor") for n in lm.notices)
    card = lm.card()
    assert "mystery" in card["ignored weights"]
    assert "unknown weights ignored" in header_line(card)
    exp = expected()
    assert float((lm.logits(exp["input_ids"]) - exp["logits_no_ema"]).abs().max()) <= TOL


def test_tensors_known_to_carry_no_function_are_skipped_silently(tmp_path):
    extra = {
        "_orig_mod.transformer.h.2.attn.rope.inv_freq": torch.ones(12),
        "_orig_mod.transformer.h.2.attn.rope.harmonic_mult": torch.arange(1.0, 5.0),
        "_orig_mod.freqs_cis": torch.ones(128, 12, 2),
    }
    lm = swamla_tui.load(_fixture_with(tmp_path, extra))
    assert not any("unknown" in n or "WARNING" in n for n in lm.notices)
    assert "ignored weights" not in lm.card()


def test_ema_flag_without_ema_weights_is_one_line(tmp_path):
    from tests.support.helpers import V2_CKPT

    with pytest.raises(CheckpointError, match="carries no EMA weights"):
        swamla_tui.load(V2_CKPT, tokenizer=False, ema=True)


def test_cli_flags_reach_the_loader(tmp_path, capsys):
    from swamla_tui.cli.main import main

    p = _fixture_with(tmp_path, {"_orig_mod.transformer.h.0.attn.mystery.weight": torch.ones(4)})
    assert main(["--checkpoint", str(p), "--info"]) != 0
    err = capsys.readouterr().err
    assert "mystery.weight is not part of any SWA-MLA generation" in err
    assert main(["--checkpoint", str(p), "--info", "--ignore-unknown-weights", "--ema"]) == 0
    out = capsys.readouterr().out
    assert "ignored weights" in out and "mystery" in out
    assert "EMA overlay" in out and "value embeddings" in out and "FoPE" in out
    assert main(["--checkpoint", str(p), "--info", "--ignore-unknown-weights", "--no_ema"]) == 0
    assert "weights" in (out := capsys.readouterr().out) and "trained" in out


def test_value_rows_past_a_short_table_are_zero():
    from torch import nn

    from swamla_tui.model.g7 import value_term

    table, gate = nn.Embedding(5, 3), nn.Linear(2, 1, bias=False)
    u = torch.randn(1, 3, 4)
    with torch.no_grad():
        out = value_term(table, gate, u, torch.tensor([[0, 4, 7]]))
        g = 2 * torch.sigmoid(u[..., :2] @ gate.weight.T)
        assert torch.allclose(out[0, :2], g[0, :2] * table.weight[[0, 4]])
        assert torch.equal(out[0, 2], torch.zeros(3))


def test_generation_detection_by_weights_container_and_config():
    """formats G7 §12, in that order; a G6 checkpoint stays G6."""
    from swamla_tui.checkpoint.reader import read_checkpoint, strip_prefixes
    from swamla_tui.model.detect import detect_generation
    from tests.support.helpers import V2_CKPT

    g6 = read_checkpoint(V2_CKPT)
    sd = {strip_prefixes(k): v for k, v in g6["model_state_dict"].items()}
    args = dict(g6["config"])
    assert detect_generation(sd, args, "model_state_dict")[0] == "G6"
    box = ("model_state_dict", "config", "args", "checkpoint_type")
    assert detect_generation(sd, args, "model_state_dict", box) == (
        "G7",
        "G7 container (top-level 'args')",
    )
    assert detect_generation(sd, {**args, "fope_enabled": False}, "")[1] == (
        "config has fope_enabled"
    )
    fused = {**sd, "transformer.h.0.attn.qkv_conv.weight": torch.zeros(3, 1, 4)}
    assert detect_generation(fused, {}, "")[1] == "G7 weights (attn.qkv_conv.weight)"


@pytest.mark.parametrize("g7, sizes, terms", [(True, [31, 31], 4), (True, [31, 37], 3),
                                              (False, [31, 31], 3)])  # fmt: skip
def test_engram_hash_terms(g7, sizes, terms):
    """formats G7 §5: equal table sizes across an order's heads XOR all n terms, else three."""
    from swamla_tui.model.config import EngramConfig
    from swamla_tui.model.engram import Engram

    cfg = EngramConfig(layers=[0], orders=[4], n_hash_heads=2, table_sizes=sizes, slot=3,
                       conv_kernel=2, n_seed_rows=4, gate_bias=g7)  # fmt: skip
    e = Engram(8, cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        e.embeddings.hash_seeds.copy_(torch.randint(1, 2**40, (4, 2), generator=g))
        for tab in e.embeddings.tables.values():
            assert isinstance(tab, torch.nn.Embedding)
            tab.weight.copy_(torch.randn(tab.weight.shape, generator=g))
    c = torch.randint(0, 50, (1, 3 + 6), generator=g)  # 3 history ids, then 6 tokens
    got = e.memory(c, 6)
    s = e.embeddings.hash_seeds
    for t in range(6):
        for kh in range(2):
            h = 0
            for i in range(terms):
                h ^= int(c[0, t + i]) * int(s[i, kh])
            table = e.embeddings.tables[f"n4_h{kh}"]
            assert isinstance(table, torch.nn.Embedding)
            row = table.weight[h % sizes[kh]]
            assert torch.equal(got[0, t, kh * 3 : kh * 3 + 3], row)
