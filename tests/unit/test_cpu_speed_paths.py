"""CPU speed paths against the plain computation: bfloat16's packed float16 products
(`fuse.PackedLinear`) and the last-position-only prefill head.

bfloat16 tolerance: the reference fixture's float32 logits (|logit| <= 8.9) against a
bfloat16 load, max |diff| measured 0.317 with and without the packed products (the
bfloat16 weights and activations set it, not the kernel): bound 0.35.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import swamla_tui
from swamla_tui.engine.decoder import BatchDecoder
from swamla_tui.engine.options import EngineOptions
from swamla_tui.model.fuse import PackedLinear, cpu_has_native_bf16, pack_bf16_linears
from tests.support.helpers import FIXTURE_CKPT, FIXTURE_EXPECTED

BF16_TOL = 0.35


@pytest.fixture(scope="module")
def expected():
    return torch.load(FIXTURE_EXPECTED, weights_only=True)


@pytest.fixture(scope="module")
def bf16():
    return swamla_tui.load(FIXTURE_CKPT, tokenizer=False, dtype="bfloat16")


def _packed(model: torch.nn.Module) -> int:
    return sum(isinstance(m, PackedLinear) for m in model.modules())


def test_packed_linear_is_the_float_product_of_the_bf16_weights():
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(128, 96, bias=True).to(torch.bfloat16)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(96, 128, generator=g) * 0.05)
        lin.weight[0, :4] = torch.tensor([1e-6, -3e-5, 70.0, 0.0])  # subnormal-in-fp16 values
    x = torch.randn(2, 7, 128, generator=g).to(torch.bfloat16)
    ref = F.linear(x.float(), lin.weight.float(), lin.bias.float())  # exact inputs, fp32 sums
    plain = lin(x)
    assert pack_bf16_linears(lin) == 1 and isinstance(lin, PackedLinear)
    y = lin(x)
    assert y.shape == (2, 7, 96) and y.dtype == torch.bfloat16
    # one bfloat16 rounding of the float32 result (2^-8 relative), no more
    assert ((y.float() - ref).abs() <= ref.abs() * 2**-8 + 1e-5).all()
    assert (y.float() - ref).abs().max() <= (plain.float() - ref).abs().max() + 1e-6
    assert lin.state_dict().keys() == {"weight", "bias"}


def test_packed_linear_falls_back_when_the_weight_is_replaced():
    lin = torch.nn.Linear(64, 32).to(torch.bfloat16)
    pack_bf16_linears(lin)
    new = torch.randn(32, 64).to(torch.bfloat16)
    lin.weight = torch.nn.Parameter(new, requires_grad=False)
    x = torch.randn(3, 64).to(torch.bfloat16)
    assert torch.equal(lin(x), F.linear(x, new, lin.bias))


def test_out_of_range_weights_keep_the_bf16_kernel():
    lin = torch.nn.Linear(64, 32).to(torch.bfloat16)
    with torch.no_grad():
        lin.weight[0, 0] = 1e6  # not a float16 value
    assert pack_bf16_linears(lin) == 0 and type(lin) is torch.nn.Linear


def test_bf16_load_packs_where_the_cpu_lacks_bf16(bf16, expected):
    want = 0 if cpu_has_native_bf16() else 35  # every projection and the head; not wkv_b
    assert _packed(bf16.model) == want
    mla = bf16.model.transformer.h[2].attn
    assert (mla._wkv_b32 is not None) == (want > 0)  # float32 absorbed attention with it
    off = swamla_tui.load(
        FIXTURE_CKPT, tokenizer=False, dtype="bfloat16", engine=EngineOptions(cpu_layout=False)
    )
    assert _packed(off.model) == 0
    ids = expected["input_ids"]
    for lm in (bf16, off):
        diff = (lm.logits(ids).float() - expected["logits"]).abs().max().item()
        assert diff <= BF16_TOL, diff


def test_bf16_cached_decode_matches_its_full_forward(bf16, expected):
    ids = expected["input_ids"]
    ref = bf16.logits(ids).float()
    dec = BatchDecoder(bf16.model, max_length=128)
    errs = []
    with torch.inference_mode():
        lg = dec.prefill([ids[0, :20].tolist(), ids[1, :20].tolist()], capacity=100).float()
        errs.append((lg - ref[:, 19]).abs().max())
        for s in range(40):
            lg = dec.step(ids[:, 20 + s].clone()).float()
            errs.append((lg - ref[:, 20 + s]).abs().max())
    # both paths round activations to bfloat16 at different points (absorbed MLA, caches)
    assert max(float(e) for e in errs) <= 0.25


def test_prefill_computes_the_head_for_the_last_position_only(expected):
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False)
    m, ids = lm.model, expected["input_ids"][:, :30]
    pos = torch.arange(30)[None].expand(2, 30)
    with torch.inference_mode():
        cache = m.setup_cache(2, 64)
        last = m.forward_cached(ids, pos, cache, m.step_context(pos, cache), last_only=True)
        cache = m.setup_cache(2, 64)
        every = m.forward_cached(ids, pos, cache, m.step_context(pos, cache))
    assert last.shape == (2, 1, 512) and every.shape == (2, 30, 512)
    assert (last[:, 0] - every[:, -1]).abs().max() <= 1e-5  # same values, other GEMM shape
    assert (last[:, 0] - expected["logits"][:, 29]).abs().max() <= 1e-4


def _decode_errors(model, ids, ref, swa_dtype):
    """Max |logit - ref| over a 20-token prefill and 40 decode steps, SWA caches in `swa_dtype`."""
    pos = torch.arange(20)[None].expand(2, 20)
    errs = []
    with torch.inference_mode():
        cache = model.setup_cache(2, 64)
        cache.swa_k = [None if t is None else t.to(swa_dtype) for t in cache.swa_k]
        cache.swa_v = [None if t is None else t.to(swa_dtype) for t in cache.swa_v]
        lg = model.forward_cached(ids[:, :20], pos, cache, model.step_context(pos, cache))
        errs.append((lg[:, -1].float() - ref[:, 19]).abs().max())
        for s in range(20, 60):
            p = torch.full((2, 1), s)
            lg = model.forward_cached(ids[:, s : s + 1], p, cache, model.step_context(p, cache))
            errs.append((lg[:, -1].float() - ref[:, s]).abs().max())
    return max(float(e) for e in errs)


def test_bf16_swa_cache_is_float32_on_the_cpu(bf16, expected):
    """A bfloat16 model's SWA keys/values are stored in float32 on the CPU (PyTorch's
    bfloat16 attention for one query row is 2-3x slower); MLA's latents stay bfloat16.
    The values are the same, so decoding is as close to the float32 fixture as with a
    bfloat16 cache (closer: attention no longer rounds to bfloat16)."""
    m = bf16.model
    cache = m.setup_cache(2, 64)
    kinds = m.cfg.layer_kinds
    assert {cache.swa_k[i].dtype for i, k in enumerate(kinds) if k == "swa"} == {torch.float32}
    assert {cache.mla_kv[i].dtype for i, k in enumerate(kinds) if k == "mla"} == {torch.bfloat16}
    ids, ref = expected["input_ids"], expected["logits"]
    f32 = _decode_errors(m, ids, ref, torch.float32)
    b16 = _decode_errors(m, ids, ref, torch.bfloat16)
    assert f32 <= BF16_TOL and f32 <= b16 + 0.02, (f32, b16)


def test_onednn_linear_is_the_float32_product(monkeypatch):
    """`OneDNNLinear` (float32 products in oneDNN, chosen on AMD CPUs) computes F.linear,
    for 2-D and 3-D inputs, strided inputs, with and without a bias; other dtypes fall
    back to F.linear."""
    from swamla_tui.model import fuse

    if not torch._C._has_mkldnn:
        pytest.skip("a torch built without oneDNN")
    g = torch.Generator().manual_seed(4)
    lin = torch.nn.Linear(64, 40)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(40, 64, generator=g))
    monkeypatch.setattr(fuse, "ONEDNN_MIN_VALUES", 1)  # small weights too (normally F.linear)
    calls = []
    real = fuse.onednn_linear

    def counted(*a):
        calls.append(1)
        return real(*a)

    monkeypatch.setattr(fuse, "onednn_linear", counted)
    assert fuse.use_onednn_linears(torch.nn.Sequential(lin)) == 1
    assert isinstance(lin, fuse.OneDNNLinear)
    for x in (torch.randn(3, 64, generator=g), torch.randn(2, 5, 128, generator=g)[..., ::2]):
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias))
    lin.bias = None  # type: ignore[assignment]
    x = torch.randn(4, 64, generator=g)
    torch.testing.assert_close(lin(x), F.linear(x, lin.weight))
    assert len(calls) == 3  # all three went through oneDNN
    xb = x.bfloat16()
    lb = torch.nn.Linear(64, 40).bfloat16()
    lb.__class__ = fuse.OneDNNLinear
    torch.testing.assert_close(lb(xb), F.linear(xb, lb.weight, lb.bias))
    monkeypatch.setattr(fuse, "cpu_vendor", lambda: "GenuineIntel")
    fuse.onednn_float32_products.cache_clear()
    try:
        assert not fuse.onednn_float32_products()  # Intel keeps the column-major BLAS
    finally:
        fuse.onednn_float32_products.cache_clear()


def test_onednn_model_keeps_the_logits(expected):
    """The v1 fixture with every product in oneDNN (row-major weights) gives the float32
    reference logits, full forward and cached decode."""
    from swamla_tui.model.fuse import OneDNNLinear

    lm = swamla_tui.load(
        FIXTURE_CKPT, tokenizer=False, engine=EngineOptions(cpu_layout=False)
    )  # row-major, plain products
    m = lm.model
    n = m.use_cpu_onednn_products()
    m.prepare()
    assert n > 0 and any(isinstance(x, OneDNNLinear) for x in m.modules())
    ids = expected["input_ids"]
    assert (lm.logits(ids) - expected["logits"]).abs().max() <= 1e-4
    dec = BatchDecoder(m, max_length=128)
    with torch.inference_mode():
        lg = dec.prefill([ids[0, :20].tolist(), ids[1, :20].tolist()], capacity=64)
        errs = [(lg - expected["logits"][:, 19]).abs().max()]
        for s in range(20, 40):
            lg = dec.step(ids[:, s].clone())
            errs.append((lg - expected["logits"][:, s]).abs().max())
    assert max(float(e) for e in errs) <= 1e-4
