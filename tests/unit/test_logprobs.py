"""Per-token log-probabilities (`lm.stream(..., logprobs=k)`) against the plain full forward."""

from __future__ import annotations

import math

import pytest
import torch

from swamla_tui.base.params import SamplingParams

PROMPT = "You: Hello there, how are you today?\nAssistant:"


def _by_hand(logits: torch.Tensor, seen: set[int], p: SamplingParams) -> torch.Tensor:
    """The sampling distribution written out independently of engine/sampling.py."""
    x = logits.double().clone()
    for i in seen:
        x[i] = x[i] / p.repetition_penalty if x[i] > 0 else x[i] * p.repetition_penalty
    x = x / p.temperature
    order = torch.argsort(x, descending=True)
    keep = torch.zeros_like(x, dtype=torch.bool)
    probs = torch.softmax(x[order[: p.top_k]], dim=0)
    mass = 0.0
    for rank in range(p.top_k):
        keep[order[rank]] = True
        mass += float(probs[rank])
        if mass >= p.top_p:
            break
    return torch.log_softmax(x.masked_fill(~keep, float("-inf")), dim=0)


def _full_logits(lm, ids: list[int]) -> torch.Tensor:
    logits: torch.Tensor = lm.logits(torch.tensor([ids]))[0].float()  # [T, V]
    return logits


def test_off_by_default(fixture_lm):
    s = fixture_lm.stream(PROMPT, SamplingParams(temperature=0.0, max_new_tokens=4))
    "".join(s)
    assert s.token_logprobs == [] and len(s.token_ids) == 4


def test_greedy_raw_logprobs_equal_the_full_forward(fixture_lm):
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=8)
    s = fixture_lm.stream(PROMPT, params, logprobs=5)
    "".join(s)
    prompt = fixture_lm.encode(PROMPT)
    ids = s.token_ids
    assert len(s.token_logprobs) == len(ids) == 8
    full = torch.log_softmax(_full_logits(fixture_lm, prompt + ids), dim=-1)
    for t, rec in enumerate(s.token_logprobs):
        row = full[len(prompt) - 1 + t]
        assert rec.token == ids[t]
        assert rec.logprob == 0.0 and rec.entropy == 0.0  # greedy: one-hot distribution
        assert rec.raw_logprob == pytest.approx(float(row[ids[t]]), abs=1e-4)
        assert rec.raw_top[0][0] == ids[t] == int(row.argmax())
        want = torch.topk(row, 5)
        assert [i for i, _ in rec.raw_top] == want.indices.tolist()
        assert [v for _, v in rec.raw_top] == pytest.approx(want.values.tolist(), abs=1e-4)


def test_sampled_logprobs_follow_the_filters(fixture_lm):
    params = SamplingParams(
        temperature=0.7, top_k=6, top_p=0.8, repetition_penalty=1.3, max_new_tokens=10, seed=11
    )
    s = fixture_lm.stream(PROMPT, params, logprobs=4)
    "".join(s)
    prompt = fixture_lm.encode(PROMPT)
    ids = s.token_ids
    full = _full_logits(fixture_lm, prompt + ids)
    for t, rec in enumerate(s.token_logprobs):
        want = _by_hand(full[len(prompt) - 1 + t], set(prompt + ids[:t]), params)
        assert math.isfinite(rec.logprob)  # a drawn token was allowed by the filters
        assert rec.logprob == pytest.approx(float(want[ids[t]]), abs=1e-4)
        kept = want[want > float("-inf")]
        assert len(rec.top) == min(4, kept.numel()) <= 6
        assert sum(math.exp(v) for _, v in rec.top) <= 1 + 1e-5
        p = kept.exp()
        assert rec.entropy == pytest.approx(float(-(p * kept).sum()), abs=1e-4)


def test_recording_does_not_change_the_tokens(fixture_lm):
    params = SamplingParams(temperature=0.9, top_k=20, top_p=0.95, max_new_tokens=12, seed=4)
    a = fixture_lm.stream(PROMPT, params)
    b = fixture_lm.stream(PROMPT, params, logprobs=3)
    assert "".join(a) == "".join(b)
    assert a.token_ids == b.token_ids == [r.token for r in b.token_logprobs]


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p", "penalty", "seen_top"),
    [
        (0.7, 6, 0.8, 1.3, 0),
        (1.0, 50, 1.0, 1.0, 0),
        (1.3, 3, 0.5, 1.1, 0),
        (0.0, 50, 0.9, 1.2, 0),
        (0.9, 20, 0.95, 2.0, 150),  # the raw top 150 seen and penalised: past the candidates
        (0.0, 20, 0.95, 2.0, 150),
    ],
)
def test_fast_paths_equal_the_full_distribution(temperature, top_k, top_p, penalty, seen_top):
    """`record_logprobs`'s top-k and greedy paths against the [B, V] general path, with
    values tied with the k-th (which `sample` keeps) in one row."""
    from swamla_tui.engine.logprobs import _record_full, record_logprobs
    from swamla_tui.engine.sampling import sample

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 300, generator=g) * 3
    logits[1, 10:14] = logits[1].topk(top_k).values[-1]  # ties at the k-th value
    seen = torch.rand(3, 300, generator=g) < 0.1
    if seen_top:
        seen.scatter_(-1, logits.topk(seen_top, dim=-1).indices, True)
    params = SamplingParams(
        temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=penalty
    )
    chosen = sample(
        logits, seen, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=penalty, generator=g,
    )  # fmt: skip
    chosen[2] = int(logits[2].argmin())  # a token that could not be drawn: -inf
    fast = record_logprobs(logits, seen, chosen, params, 5)
    lpc, ent, tv, ti = _record_full(logits, seen, chosen, params, 5)
    for b, rec in enumerate(fast):
        assert rec.logprob == pytest.approx(float(lpc[b, 0]), abs=1e-5)
        assert rec.entropy == pytest.approx(max(0.0, float(ent[b, 0])), abs=1e-5)
        want = [(int(i), float(v)) for i, v in zip(ti[b], tv[b], strict=True) if v > -math.inf]
        assert [i for i, _ in rec.top] == [i for i, _ in want]
        assert [v for _, v in rec.top] == pytest.approx([v for _, v in want], abs=1e-5)
        raw = torch.log_softmax(logits[b], dim=-1)
        assert rec.raw_logprob == pytest.approx(float(raw[chosen[b]]), abs=1e-5)
        want_raw = raw.topk(5).values.tolist()  # ids: tied values may come in any order
        assert [v for _, v in rec.raw_top] == pytest.approx(want_raw, abs=1e-5)
        assert all(float(raw[i]) == pytest.approx(v, abs=1e-5) for i, v in rec.raw_top)
        assert len({i for i, _ in rec.raw_top}) == 5
    assert fast[2].logprob == -math.inf and math.isfinite(fast[0].logprob)
    if not seen_top:  # row 0 (no ties, few seen ids) is answered from the candidates
        from swamla_tui.engine.logprobs import _record_candidates

        cand_v, cand_i = logits[:1].topk(top_k + 65, dim=-1)
        assert _record_candidates(cand_v, cand_i, seen[:1], chosen[:1], params, 5, 300)
