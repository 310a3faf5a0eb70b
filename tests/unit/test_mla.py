"""model/mla.py: the three forms of MLA attention a cached forward picks from (absorbed for
decode steps, expanded with a mask for long prompt chunks, expanded causal for a fresh
prefill) agree with each other and with the plain full forward."""

from __future__ import annotations

import pytest
import torch

from swamla_tui.model.config import ModelConfig
from swamla_tui.model.mla import MLAAttention
from swamla_tui.model.transformer import SWAMLA
from tests.support.helpers import FIXTURE_CKPT, TEST_DEVICE, random_init_


def _attention(bias: bool, dv: int) -> MLAAttention:
    cfg = ModelConfig(
        n_layer=1, n_embd=48, n_head=4, n_kv_head=4, vocab_size=64, block_size=64,
        layer_kinds=["mla"], kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8,
        v_head_dim=dv, bias=bias,
    )  # fmt: skip
    attn = MLAAttention(cfg)
    random_init_(attn, seed=3)
    return attn


@pytest.mark.parametrize(("bias", "dv"), [(False, 24), (True, 12), (False, 32)])
def test_expanded_and_absorbed_attention_agree(bias: bool, dv: int) -> None:
    """dv 24 = dn + dr; 12 and 32 need the zero columns that keep the fused kernel."""
    attn = _attention(bias, dv)
    g = torch.Generator().manual_seed(0)
    b, t, h = 2, 9, attn.h
    q_nope = torch.randn(b, t, h, attn.dn, generator=g)
    q_pe = torch.randn(b, t, h, attn.dr, generator=g)
    lat = torch.randn(b, t, attn.r + attn.dr, generator=g)
    causal = torch.ones(t, t, dtype=torch.bool).tril()[None, None].expand(b, 1, t, t)
    with torch.inference_mode():
        a = attn._absorbed(q_nope, q_pe, lat, None, causal)
        e = attn._expanded(q_nope, q_pe, lat, None, causal)
        c = attn._expanded(q_nope, q_pe, lat, None, None)
    assert a.shape == e.shape == c.shape == (b, t, h, dv)
    assert (a - e).abs().max() <= 1e-5
    assert (c - e).abs().max() <= 1e-5


def test_value_embeddings_enter_both_forms_alike() -> None:
    attn = _attention(False, 12)
    g = torch.Generator().manual_seed(1)
    b, t, n, h = 1, 3, 7, attn.h
    q_nope = torch.randn(b, t, h, attn.dn, generator=g)
    q_pe = torch.randn(b, t, h, attn.dr, generator=g)
    lat = torch.randn(b, n, attn.r + attn.dr, generator=g)
    ve = torch.randn(b, n, h * attn.dv, generator=g)
    pos = torch.arange(n - t, n)  # the last t of n tokens, with the first key masked out
    mask = (torch.arange(n)[None, :] <= pos[:, None]) & (torch.arange(n)[None, :] > 0)
    mask = mask[None, None]
    with torch.inference_mode():
        a = attn._absorbed(q_nope, q_pe, lat, ve, mask)
        e = attn._expanded(q_nope, q_pe, lat, ve, mask)
        without = attn._expanded(q_nope, q_pe, lat, None, mask)
    assert (a - e).abs().max() <= 1e-5
    assert (e - without).abs().max() > 1e-3  # the values did enter


def test_a_decode_step_absorbs_and_a_long_chunk_expands() -> None:
    attn = _attention(False, 24)
    assert not attn._expansion_pays(1, 4096)
    assert attn._expansion_pays(512, 2048)


@pytest.fixture(scope="module")
def fixture_model() -> SWAMLA:
    import swamla_tui

    return swamla_tui.load(FIXTURE_CKPT, tokenizer=False, device=TEST_DEVICE).model


@pytest.mark.parametrize("expand", [True, False])
def test_prompt_chunks_match_the_full_forward_either_way(
    fixture_model: SWAMLA, expand: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt fed in chunks (the first a fresh causal prefill, the rest over the cache),
    with every later chunk forced through one form, gives the full forward's logits."""
    monkeypatch.setattr(MLAAttention, "_expansion_pays", lambda self, t, n: expand)
    m = fixture_model
    dev = m.transformer.wte.weight.device
    ids = torch.randint(0, m.cfg.vocab_size, (2, 90), generator=torch.Generator().manual_seed(5))
    ids = ids.to(dev)
    with torch.inference_mode():
        ref = m(ids)
        cache = m.setup_cache(2, 100)
        got = []
        for a, z in ((0, 31), (31, 32), (32, 77), (77, 90)):
            pos = torch.arange(a, z, device=dev)[None].expand(2, -1)
            ctx = m.step_context(pos, cache)
            assert ctx.causal == (a == 0)
            got.append(m.forward_cached(ids[:, a:z], pos, cache, ctx))
    out = torch.cat(got, dim=1)
    assert (out.float() - ref.float()).abs().max() <= 1e-4


def test_the_absorbed_form_follows_weights_changed_in_place() -> None:
    """The CPU keeps a per-head copy of `wkv_b` for the absorbed form: a weight changed in
    place (as the A/B tests' noise does) must not leave it stale."""
    attn = _attention(False, 24)
    g = torch.Generator().manual_seed(2)
    b, t, h = 1, 1, attn.h
    q_nope = torch.randn(b, t, h, attn.dn, generator=g)
    q_pe = torch.randn(b, t, h, attn.dr, generator=g)
    lat = torch.randn(b, 5, attn.r + attn.dr, generator=g)
    mask = torch.ones(b, 1, t, 5, dtype=torch.bool)
    before = attn._absorbed(q_nope, q_pe, lat, None, mask)
    with torch.no_grad():
        attn.wkv_b.weight.mul_(1.5)
    after = attn._absorbed(q_nope, q_pe, lat, None, mask)
    assert (after - before).abs().max() > 1e-3
    assert (after - attn._expanded(q_nope, q_pe, lat, None, mask)).abs().max() <= 1e-5
