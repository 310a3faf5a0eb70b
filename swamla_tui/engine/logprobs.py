"""Per-token probabilities for the inspector and the API (`lm.stream(..., logprobs=k)`).

Recorded only when asked: for each generated token, its log-probability under the model's
raw distribution (softmax of the logits) and under the sampling distribution actually
used (repetition penalty, temperature, top-k, top-p: the same filters `sampling.sample`
applies, so a token `sample` can draw always has a finite log-probability here), the
entropy of the sampling distribution, and the top-`k` alternatives of both. Greedy
decoding (temperature 0) samples from a one-hot distribution: probability 1 for the
argmax, entropy 0.

The figures come from the same `[B, V]` logits and the same `seen` mask the sampler used;
one host transfer per step. With top-k on (the default) or greedy decoding, only the k
survivors (or the argmax) can be drawn, so the sampling distribution is built on a few
candidates, not on the vocabulary: the recording then costs one top-k and one
log-sum-exp over the logits (`record_logprobs`; scripts/measure_logprobs.py). The CUDA-graph path does not expose its per-step logits to
the host loop, so a generation that records log-probabilities decodes eagerly (see
`Generation`); it costs the graph's speed-up only when the inspector is on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base.params import SamplingParams
from ..base.tokens import TokenLogprobs
from .sampling import apply_repetition_penalty, top_k_filter, top_p_filter

__all__ = ["TokenLogprobs", "record_logprobs", "sampling_logprobs"]


def sampling_logprobs(logits: Tensor, seen: Tensor, params: SamplingParams) -> Tensor:
    """logits [B, V], seen [B, V] -> log-probs [B, V] of the distribution `sample` draws from."""
    x = apply_repetition_penalty(logits.float(), seen, float(params.repetition_penalty))
    if params.temperature <= 0:
        one_hot = torch.full_like(x, float("-inf"))
        return one_hot.scatter_(-1, x.argmax(dim=-1, keepdim=True), 0.0)
    x = x / float(params.temperature)
    k, top_p = int(params.top_k), float(params.top_p)
    if 0 < k < x.shape[-1] and top_p < 1.0:
        # as `sample`: top-p over the k survivors only (sorts k values, not the vocabulary)
        vals, idx = torch.topk(x, k, dim=-1)  # [B, k], descending
        probs_k = torch.softmax(vals, dim=-1)
        drop_k = (torch.cumsum(probs_k, dim=-1) - probs_k) >= top_p
        drop_k[..., 0] = False
        x = x.masked_fill(x < vals[..., -1:], float("-inf"))  # ties at the k-th kept, as there
        drop = torch.zeros_like(x, dtype=torch.bool).scatter(-1, idx, drop_k)
        return torch.log_softmax(x.masked_fill(drop, float("-inf")), dim=-1)
    x = top_k_filter(x, k)
    x = top_p_filter(x, top_p)
    return torch.log_softmax(x, dim=-1)


def _host_rows(
    chosen: Tensor,
    lpc: Tensor,
    raw_c: Tensor,
    entropy: Tensor,
    top_v: Tensor,
    top_i: Tensor,
    raw_v: Tensor,
    raw_i: Tensor,
) -> list[TokenLogprobs]:
    """One host transfer ([B, 3 + 2(k_top + k_raw)]) -> one `TokenLogprobs` per row."""
    kt, kr = top_v.shape[-1], raw_v.shape[-1]
    parts = [lpc, raw_c, entropy, top_v, top_i.float(), raw_v, raw_i.float()]
    host = torch.cat(parts, dim=-1).tolist()
    out = []
    for row, tok in zip(host, chosen.tolist(), strict=True):
        tv, ti = row[3 : 3 + kt], row[3 + kt : 3 + 2 * kt]
        rv, ri = row[3 + 2 * kt : 3 + 2 * kt + kr], row[3 + 2 * kt + kr :]
        out.append(
            TokenLogprobs(
                token=int(tok),
                logprob=row[0],
                raw_logprob=row[1],
                entropy=max(0.0, row[2]),
                top=tuple((int(i), v) for i, v in zip(ti, tv, strict=True) if v > float("-inf")),
                raw_top=tuple((int(i), v) for i, v in zip(ri, rv, strict=True)),
            )
        )
    return out


_SLACK = 64
"""Candidates beyond top-k + 1 taken from the raw logits, room for penalised seen ids."""


def record_logprobs(
    logits: Tensor, seen: Tensor, chosen: Tensor, params: SamplingParams, k: int
) -> list[TokenLogprobs]:
    """One `TokenLogprobs` per row for the ids `chosen` [B] drawn from `logits` [B, V].

    The usual settings (top-k on, or greedy) take `_record_top_k` / `_record_greedy`: they
    work on a few candidates (the raw logits' top k + 1 + `_SLACK`) instead of building
    the [B, V] sampling distribution, so the only passes over the vocabulary are one
    top-k and one log-sum-exp (each costs a thread-pool round on a CPU; a loaded machine
    makes those rounds slow). tests/unit/test_logprobs.py checks them against
    `_record_full`, the general path, which they also fall back to when the candidates
    cannot be shown to hold the answer.
    """
    x0 = logits.float()
    v = x0.shape[-1]
    k = max(1, min(int(k), v))
    greedy = params.temperature <= 0
    top_k = 0 if greedy else int(params.top_k)
    fast = greedy or 0 < top_k < v
    n_cand = min(v, max(k, top_k + 1 + _SLACK)) if fast else k
    cand_v, cand_i = torch.topk(x0, n_cand, dim=-1)  # [B, n_cand], descending
    raw_lse = torch.logsumexp(x0, dim=-1, keepdim=True)  # [B, 1]
    raw_c = x0.gather(-1, chosen[:, None]) - raw_lse  # [B, 1]
    parts = None
    if fast:
        parts = _record_candidates(cand_v, cand_i, seen, chosen, params, k, v)
    if parts is None:
        parts = _record_full(x0, seen, chosen, params, k)
    lpc, entropy, top_v, top_i = parts
    raw_v, raw_i = cand_v[:, :k] - raw_lse, cand_i[:, :k]
    return _host_rows(chosen, lpc, raw_c, entropy, top_v, top_i, raw_v, raw_i)


_Parts = tuple[Tensor, Tensor, Tensor, Tensor]  # chosen logprob [B,1], entropy [B,1], top [B,k] x2


def _record_full(x0: Tensor, seen: Tensor, chosen: Tensor, p: SamplingParams, k: int) -> _Parts:
    """The general path: the [B, V] sampling distribution (`sampling_logprobs`)."""
    used = sampling_logprobs(x0, seen, p)  # [B, V]
    prob = used.exp()
    entropy = -(prob * used.masked_fill(prob == 0, 0.0)).sum(dim=-1, keepdim=True)  # 0·log 0 = 0
    top_v, top_i = torch.topk(used, k, dim=-1)
    return used.gather(-1, chosen[:, None]), entropy, top_v, top_i


def _record_candidates(
    cand_v: Tensor,
    cand_i: Tensor,
    seen: Tensor,
    chosen: Tensor,
    p: SamplingParams,
    k: int,
    v: int,
) -> _Parts | None:
    """Greedy, or top-k on, from the raw logits' top candidates [B, C] (None: unsure).

    The penalty only lowers a logit (divides a positive one, multiplies a negative one by
    a factor >= 1), so no id outside the candidates can score above the last candidate's
    raw logit: when the penalised candidates' (top_k + 1)-th value is strictly above it,
    the candidates' top-k is the vocabulary's. Values tied at the k-th, which `sample`
    keeps beyond the k, are left to the general path too.
    """
    pen = float(p.repetition_penalty)
    x = apply_repetition_penalty(cand_v, seen.gather(-1, cand_i), pen)  # [B, C]
    bound = cand_v[:, -1:]  # [B, 1]: every id outside the candidates scores at most this
    if p.temperature <= 0:  # a one-hot distribution on the penalised argmax
        two_v, two_at = torch.topk(x, min(2, x.shape[-1]), dim=-1)  # [B, <= 2]
        best_v, at = two_v[:, :1], two_at[:, :1]
        if x.shape[-1] < v and not bool((best_v > bound).all()):
            return None
        if two_v.shape[-1] == 2 and bool((two_v[:, 0] == two_v[:, 1]).any()):
            return None  # a tie: `sample`'s argmax takes the lowest id
        best = cand_i.gather(-1, at)  # [B, 1]
        zero = torch.zeros_like(best_v)
        lpc = torch.where(best == chosen[:, None], zero, torch.full_like(zero, float("-inf")))
        return lpc, zero, zero, best
    kk, t = int(p.top_k), float(p.temperature)
    vals, order = torch.topk(x / t, kk + 1, dim=-1)  # [B, kk + 1], descending
    sure = x.shape[-1] == v or bool((vals[:, kk] > bound[:, 0] / t).all())
    if not sure or bool((vals[:, kk] == vals[:, kk - 1]).any()):
        return None
    vals, idx = vals[:, :kk], cand_i.gather(-1, order[:, :kk])  # [B, kk]
    kept = vals
    if float(p.top_p) < 1.0:  # as `sample`: top-p over the kk survivors
        probs_k = torch.softmax(vals, dim=-1)
        drop = (torch.cumsum(probs_k, dim=-1) - probs_k) >= float(p.top_p)
        drop[..., 0] = False
        kept = vals.masked_fill(drop, float("-inf"))
    lp = torch.log_softmax(kept, dim=-1)  # [B, kk]
    prob = lp.exp()
    entropy = -(prob * lp.masked_fill(prob == 0, 0.0)).sum(dim=-1, keepdim=True)
    pos = idx == chosen[:, None]  # [B, kk]; no match: the token could not be drawn
    lpc = lp.masked_fill(~pos, float("-inf")).amax(dim=-1, keepdim=True)
    n = min(k, kk)
    return lpc, entropy, lp[:, :n], idx[:, :n]
