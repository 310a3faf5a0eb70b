"""Recording the MoE routing and Engram gates (`swamla_tui.engine.routing`).

Checked against an independent recomputation on the plain full forward: the router's
input is captured with a forward hook on `ffn_norm` (not the recorder's hook), and the
experts, weights and entropy are computed again from the router weights (formats v2 §6).
"""

from __future__ import annotations

import math

import pytest
import torch

import swamla_tui
from swamla_tui.base.params import SamplingParams
from swamla_tui.engine.routing import RouteTally, StepRoutes, routed_layers
from swamla_tui.model.mla import MLABlock
from swamla_tui.model.moe import MoE
from tests.support.g7 import G7_CKPT, G7_TOKENIZER
from tests.support.helpers import FIXTURE_CKPT, V2_CKPT, V2_TOKENIZER

GREEDY = SamplingParams(temperature=0.0, top_k=1, top_p=1.0, repetition_penalty=1.0, seed=0)


@pytest.fixture(scope="module")
def v2():
    return swamla_tui.load(V2_CKPT, tokenizer=V2_TOKENIZER)


def _reference_routes(
    lm, ids: list[int]
) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """layer -> (top-k experts [T, k], weights [T, k], entropy [T]) of the full forward,
    from the router weights applied to the captured MoE input."""
    got: dict[int, torch.Tensor] = {}
    handles = []
    for i, blk in enumerate(lm.model.transformer.h):
        if isinstance(blk, MLABlock) and isinstance(blk.ffn, MoE):
            hook = lambda mod, inp, out, i=i: got.__setitem__(i, out[0].detach())  # noqa: E731
            handles.append(blk.ffn_norm.register_forward_hook(hook))
    with torch.inference_mode():
        lm.model(torch.tensor([ids]))
    for h in handles:
        h.remove()
    out = {}
    for i, x in got.items():
        moe = lm.model.transformer.h[i].ffn
        a = torch.sigmoid((x @ moe.router.gate.weight.T).double())
        sel = torch.topk(a + moe.router.expert_bias.double(), moe.cfg.top_k, dim=-1).indices
        s = a.gather(-1, sel)
        p = a / a.sum(-1, keepdim=True)
        out[i] = (sel, s / s.sum(-1, keepdim=True), -(p * p.log()).sum(-1))
    return out


def test_streamed_routing_is_the_full_forwards_routing(v2):
    prompt = v2.encode("Hello there, how are you?")
    s = v2.stream("Hello there, how are you?", GREEDY.copy(max_new_tokens=12), logprobs=5)
    "".join(s)
    assert len(s.token_routes) == len(s.token_ids) == len(s.token_logprobs) == 12
    ref = _reference_routes(v2, prompt + s.token_ids)
    assert sorted(ref) == [2, 5]
    for t, (route, rec) in enumerate(zip(s.token_routes, s.token_logprobs, strict=True)):
        assert rec.routing == route  # the inspector reads it from the token record
        pos = len(prompt) - 1 + t  # the position whose logits chose token t
        assert [r.layer for r in route.moe] == [2, 5]
        for r in route.moe:
            sel, w, ent = (x[pos] for x in ref[r.layer])
            want = sorted(zip(sel.tolist(), w.tolist(), strict=True), key=lambda p: -p[1])
            assert list(r.experts) == [e for e, _ in want]
            assert max(abs(a - b) for a, (_, b) in zip(r.weights, want, strict=True)) < 1e-5
            assert abs(sum(r.weights) - 1) < 1e-5
            assert r.entropy == pytest.approx(float(ent), abs=1e-4)
            assert 0 < r.entropy <= math.log(32)
    for _, m in routed_layers(v2.model)[0]:
        assert m.record is None  # the hooks are gone once the stream ends


def test_recording_changes_no_token(v2):
    p = SamplingParams(temperature=0.8, top_k=20, top_p=0.9, seed=3, max_new_tokens=16)
    # sampled (not greedy): the same draws need the same logits, routing recorded or not
    plain = v2.stream("Once upon a time", p)
    "".join(plain)
    rec = v2.stream("Once upon a time", p, logprobs=5)
    "".join(rec)
    assert plain.token_ids == rec.token_ids
    assert plain.token_routes == [] and len(rec.token_routes) == len(rec.token_ids) > 0


def test_a_model_without_moe_records_nothing(test_tokenizer_dir):
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=test_tokenizer_dir)
    s = lm.stream("Hello", GREEDY.copy(max_new_tokens=4), logprobs=3)
    "".join(s)
    assert s.token_routes == [] and all(r.routing is None for r in s.token_logprobs)
    assert not StepRoutes(lm.model).active


def test_tally_counts_the_masked_positions(v2):
    ids = torch.tensor([v2.encode("The quick brown fox jumps over the lazy dog.")])
    t = ids.shape[1]
    ref = _reference_routes(v2, ids[0].tolist())
    mask = torch.zeros(1, t, dtype=torch.bool)
    mask[0, 3:] = True
    with RouteTally(v2.model) as tally, torch.inference_mode():
        tally.mask = mask
        v2.model(ids)
    moe, gates = tally.tallies()
    assert gates == [] and [m.layer for m in moe] == [2, 5]
    for m in moe:
        sel, _, ent = ref[m.layer]
        want = torch.bincount(sel[3:].reshape(-1), minlength=32).tolist()
        assert m.counts == want and m.tokens == t - 3 and m.top_k == 8
        assert m.entropy_sum == pytest.approx(float(ent[3:].sum()), abs=1e-3)


def test_engram_gates_recorded_per_token():
    lm = swamla_tui.load(G7_CKPT, tokenizer=G7_TOKENIZER)
    _, engram = routed_layers(lm.model)
    assert engram, "the G7 fixture has Engram layers"
    s = lm.stream("Hello", GREEDY.copy(max_new_tokens=6), logprobs=3)
    "".join(s)
    prompt = lm.encode("Hello")
    # the full forward's gates, captured by the same hook, at the positions that chose
    seen: dict[int, torch.Tensor] = {}
    for i, g in engram:
        g.record = lambda gate, i=i: seen.__setitem__(i, gate.float().mean(-1)[0])
    with torch.inference_mode():
        lm.model(torch.tensor([prompt + s.token_ids]))
    for _, g in engram:
        g.record = None
    for t, r in enumerate(s.token_routes):
        assert [layer for layer, _ in r.engram] == [i for i, _ in engram]
        for layer, gate in r.engram:
            assert 0.0 <= gate <= 1.0
            assert gate == pytest.approx(float(seen[layer][len(prompt) - 1 + t]), abs=1e-4)


def test_a_retried_reply_with_the_prompt_cache_still_records_every_token(v2):
    """The chat's prompt cache can answer a repeated prompt (/retry) from stored logits,
    with no forward to route: a recording generation prefills instead."""
    p = SamplingParams(temperature=0.0, seed=0, max_new_tokens=6)
    for _ in range(2):  # the second one is the cache's exact hit
        rec = v2.stream("Hello there", p, logprobs=3, cache_key="routing-test")
        "".join(rec)
        assert len(rec.token_routes) == len(rec.token_ids) == 6
