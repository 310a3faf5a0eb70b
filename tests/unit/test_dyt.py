"""DynamicTanh checkpoints (formats v1 §2): `alpha` stored as a 0-dimensional scalar, or [1]."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import swamla_tui
from swamla_tui.model.config import ModelConfig
from swamla_tui.model.transformer import SWAMLA
from tests.support.helpers import random_init_


def _dyt_model() -> tuple[SWAMLA, dict[str, Any]]:
    cfg = ModelConfig(
        n_layer=3, n_embd=32, n_head=4, n_kv_head=4, vocab_size=101, block_size=48,
        layer_kinds=["swa", "swa", "mla"], kv_lora_rank=12, qk_nope_head_dim=8,
        qk_rope_head_dim=4, v_head_dim=8, norm="dyt", mlp_hidden=128,
    )  # fmt: skip
    model = SWAMLA(cfg).eval()
    random_init_(model, seed=11)
    args = {"size": "small", "block_size": 48, "mla_kv_lora_rank": 12}
    return model, args


@pytest.mark.parametrize("alpha_shape", [(), (1,)])
def test_dyt_checkpoint_loads_and_computes_tanh(tmp_path, alpha_shape):
    model, args = _dyt_model()
    sd = {}
    for k, v in model.state_dict().items():
        sd["_orig_mod." + k] = v.reshape(alpha_shape) if k.endswith(".alpha") else v
    assert tuple(sd["_orig_mod.transformer.ln_f.alpha"].shape) == alpha_shape
    assert {k.rsplit(".", 1)[1] for k in sd if ".norm1." in k} == {"alpha", "weight", "bias"}
    p = tmp_path / "dyt.pt"
    torch.save({"model": sd, "step": 3, "config": args}, p)
    lm = swamla_tui.load(p, tokenizer=False)
    assert lm.config.norm == "dyt" and lm.config.generation == "G1"
    ids = torch.randint(0, 101, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(ids)
    assert float((lm.logits(ids) - want).abs().max()) <= 1e-5
    # the norm itself against tanh(alpha * x) * weight + bias, written out
    x = torch.randn(5, 32)
    a = float(sd["_orig_mod.transformer.ln_f.alpha"].reshape(()))
    w, b = sd["_orig_mod.transformer.ln_f.weight"], sd["_orig_mod.transformer.ln_f.bias"]
    with torch.no_grad():
        got = lm.model.transformer.ln_f(x)
    assert float((got - (torch.tanh(a * x) * w + b)).abs().max()) <= 1e-6
    assert "DynamicTanh" in lm.card()["norm / MLP"]
