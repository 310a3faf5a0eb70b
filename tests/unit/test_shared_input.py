"""`model.shared_input.SharedInput`: SWA's q/k/v and MLA's query + latent projections as one
product, float and int8, with the members left in place and a replaced member noticed."""

from __future__ import annotations

from typing import cast

import pytest
import torch
from torch import nn

import swamla_tui
from swamla_tui.model import quant
from swamla_tui.model.mla import MLAAttention
from swamla_tui.model.shared_input import SharedInput, shared_inputs
from swamla_tui.model.swa import SWAAttention
from swamla_tui.model.transformer import SWAMLA
from tests.support.helpers import FIXTURE_CKPT, random_init_, v2_variant_config


class _Three(nn.Module):
    def __init__(self, bias: bool = False) -> None:
        super().__init__()
        self.a = nn.Linear(24, 16, bias=bias)
        self.b = nn.Linear(24, 8, bias=bias)
        self.c = nn.Linear(24, 8, bias=bias)
        self.shared = SharedInput(self, ("a", "b", "c"))


def _separate(m: _Three, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([m.a(x), m.b(x), m.c(x)], dim=-1)


@pytest.mark.parametrize("column_major", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_float_members_become_views_of_one_product(column_major, bias):
    torch.manual_seed(0)
    m = _Three(bias)
    x = torch.randn(3, 5, 24)
    want = _separate(m, x)
    keys = set(m.state_dict())
    m.shared.fuse(column_major)
    assert m.shared.fused
    fused = m.shared.product()
    assert isinstance(fused, torch.Tensor) and fused.shape == (32, 24)
    assert fused.stride() == ((1, 32) if column_major else (24, 1))
    # held once: the members' weights are rows of the fused tensor
    assert m.b.weight.data_ptr() == fused[16:24].data_ptr()
    assert set(m.state_dict()) == keys
    torch.testing.assert_close(m.shared(x), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(_separate(m, x), want, rtol=1e-6, atol=1e-6)


def test_a_replaced_member_is_noticed():
    torch.manual_seed(1)
    m = _Three()
    m.shared.fuse()
    new = {k: torch.randn_like(v) for k, v in m.state_dict().items()}
    m.load_state_dict(new, assign=True)  # new tensors: the fused copy is stale now
    x = torch.randn(2, 24)
    torch.testing.assert_close(m.shared(x), _separate(m, x))
    m.b = nn.Linear(24, 8, bias=False)  # a member replaced outright
    torch.testing.assert_close(m.shared(x), _separate(m, x))
    m.shared.fuse()
    assert m.shared.fused
    torch.testing.assert_close(m.shared(x), _separate(m, x))


def test_members_of_mixed_kinds_are_not_fused():
    m = _Three()
    m.b = nn.Linear(24, 8, bias=True)  # one with a bias, two without
    m.shared.fuse()
    assert not m.shared.fused
    x = torch.randn(2, 24)
    torch.testing.assert_close(m.shared(x), _separate(m, x))


def _int8_kinds() -> list[str]:
    kinds = ["int8-weight"]
    if quant.dynamic_cpu_problem() is None:
        kinds.append("int8-dynamic")
    if quant.split_cpu_problem() is None:
        kinds.append("int8-split")
    return kinds


@pytest.mark.parametrize("kind", _int8_kinds())
def test_int8_members_share_one_product(kind):
    """After quantizing, one int8 module holds the members' int8 rows as they are (the
    same outputs as the members alone) and the members' rows are views of its."""
    torch.manual_seed(2)
    m = _Three(bias=True)
    for name in ("a", "b", "c"):
        lin = getattr(m, name)
        setattr(m, name, quant.make_quant_linear(kind, lin.weight, lin.bias))  # type: ignore[arg-type]
    x = torch.randn(4, 24)
    want = _separate(m, x)
    m.shared.fuse()
    assert m.shared.fused
    combined = m.shared.product()
    assert isinstance(combined, quant.Int8Linear | quant.Int8DynamicLinear)
    assert cast(quant.Int8Linear, m.c).qweight.data_ptr() == combined.qweight[24:].data_ptr()
    torch.testing.assert_close(m.shared(x), want, rtol=1e-5, atol=1e-5)
    # a member called alone still works (its kernel copy is made again if it was dropped)
    torch.testing.assert_close(m.a(x), want[:, :16], rtol=1e-5, atol=1e-5)


def _shared(model: SWAMLA) -> tuple[list[SharedInput], list[SharedInput]]:
    """The MLA layers' and the SWA layers' shared inputs."""
    mla = [m.q_kv for m in model.modules() if isinstance(m, MLAAttention)]
    swa = [m.qkv for m in model.modules() if isinstance(m, SWAAttention)]
    return mla, swa


def _unfused(model: SWAMLA, ids: torch.Tensor) -> torch.Tensor:
    """The model's logits with every member run alone (the fusions switched off)."""
    sis = shared_inputs(model)
    saved = [si._fused for si in sis]
    try:
        for si in sis:
            si._fused = []
        return cast(torch.Tensor, model(ids))
    finally:
        for si, f in zip(sis, saved, strict=True):
            si._fused = f


def test_v1_model_fuses_every_attention_and_keeps_its_logits():
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False)
    model = lm.engine.model
    sis = shared_inputs(model)
    assert len(sis) == len(model.transformer.h) and all(si.fused for si in sis)
    ids = torch.randint(
        0, model.cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        torch.testing.assert_close(model(ids), _unfused(model, ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", _int8_kinds())
def test_quantized_model_fuses_its_int8_projections(kind):
    torch.manual_seed(3)
    model = SWAMLA(v2_variant_config("q_lora_g4_dense")).eval()
    random_init_(model, seed=3)
    model.prepare()
    mlas, swas = _shared(model)
    assert mlas and all(si.names == ("wq_a", "wkv_a") for si in mlas)
    ids = torch.randint(
        0, model.cfg.vocab_size, (1, 10), generator=torch.Generator().manual_seed(1)
    )
    model.quantize(kind)  # type: ignore[arg-type]
    sis = shared_inputs(model)
    assert sis and all(si.fused for si in sis)
    with torch.inference_mode():
        torch.testing.assert_close(model(ids), _unfused(model, ids), rtol=1e-4, atol=1e-4)
    assert all(isinstance(si.product(), nn.Module) for si in mlas + swas)
