"""`SWAMLA.forward_packed` (model.transformer): several cached calls in one forward give
each call's logits and cache writes of `forward_cached` alone, for a decode step over
ragged rows, a fresh prefill (causal) and a later chunk of a prompt, on the v1 fixture,
a G3 flash-SWA + MoE model and a G7-style MLA model (value embeddings, FoPE, YaRN factor,
residual scalars)."""

from __future__ import annotations

import copy
from functools import cache

import pytest
import torch

import swamla_tui
from swamla_tui.model.cache import ModelCache, Packed
from swamla_tui.model.transformer import SWAMLA
from tests.support.g7 import g7_variant_config
from tests.support.helpers import FIXTURE_CKPT, random_init_, v2_variant_config


@cache
def _model(name: str) -> SWAMLA:
    if name == "v1":
        return swamla_tui.load(FIXTURE_CKPT, tokenizer=False).engine.model
    if name == "flash_swa_g3":
        cfg = v2_variant_config(name)
    else:  # G7 semantics on MLA layers only (DeltaNet and Engram rows cannot be packed)
        cfg = g7_variant_config("yarn_fused_shared_latent")
        cfg.layer_kinds, cfg.deltanet, cfg.engram = ["mla"] * 6, None, None
        cfg.kv_ranks, cfg.ve_rows = [20, 40] * 3, [384, 0, 50304, 0, 384, 0]
    model = SWAMLA(cfg).eval()
    random_init_(model, seed=5)
    if cfg.residual_scalars:
        with torch.no_grad():
            model.x0_lambdas.copy_(0.3 * torch.randn(cfg.n_layer))  # type: ignore[union-attr]
    model.prepare()
    return model


def _prefilled(model: SWAMLA, lengths: list[int], size: int) -> ModelCache:
    """A cache whose rows hold left-padded prompts of `lengths` (a ragged batch)."""
    g = torch.Generator().manual_seed(2)
    n = max(lengths)
    c = model.setup_cache(len(lengths), size)
    ids = torch.randint(0, model.cfg.vocab_size, (len(lengths), n), generator=g)
    pos = torch.stack([torch.arange(n) - (n - k) for k in lengths]).clamp(min=-1)
    model.forward_cached(ids, pos, c, model.step_context(pos, c))
    return c


def _calls(model: SWAMLA, caches: list[ModelCache]) -> list[Packed]:
    """A decode step of 3 rows, a fresh 9-token prefill, a 5-token chunk after 6 tokens."""
    g = torch.Generator().manual_seed(3)
    v = model.cfg.vocab_size
    step, fresh, later = caches
    pos = torch.tensor([[11], [7], [-1]])  # the third row is a pad
    chunk = torch.arange(6, 11)[None]
    out = []
    for c, p, last in ((step, pos, False), (fresh, torch.arange(9)[None], True),
                       (later, chunk, False)):  # fmt: skip
        ids = torch.randint(0, v, p.shape, generator=g)
        out.append(Packed(ids, p, c, model.step_context(p, c), last))
    return out


@pytest.mark.parametrize("name", ["v1", "flash_swa_g3", "g7_mla"])
def test_packed_calls_equal_calls_alone(name):
    model = _model(name)
    with torch.inference_mode():
        caches = [_prefilled(model, [11, 7, 3], 24), model.setup_cache(1, 16),
                  _prefilled(model, [6], 16)]  # fmt: skip
        caches[1].reset()
        twins = copy.deepcopy(caches)
        packed = model.forward_packed(_calls(model, caches))
        alone = [
            model.forward_cached(c.idx, c.pos, c.cache, c.ctx, last_only=c.last_only)
            for c in _calls(model, twins)
        ]
    assert [p.shape for p in packed] == [(3, 1, model.cfg.vocab_size),
                                         (1, 1, model.cfg.vocab_size),
                                         (1, 5, model.cfg.vocab_size)]  # fmt: skip
    for got, want in zip(packed, alone, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for got_c, want_c in zip(caches, twins, strict=True):
        for a, b in zip(got_c.swa_k + got_c.mla_kv + got_c.mla_ve,
                        want_c.swa_k + want_c.mla_kv + want_c.mla_ve, strict=True):  # fmt: skip
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert torch.equal(got_c.lin_key_pos, want_c.lin_key_pos)


def test_models_with_row_state_are_not_packable():
    model = SWAMLA(v2_variant_config("engram"))
    assert not model.packable
    with pytest.raises(ValueError, match="DeltaNet or Engram"):
        model.forward_packed([])
