"""Per-token probabilities for the inspector and the API (`lm.stream(..., logprobs=k)`).

Recorded only when asked: for each generated token, its log-probability under the model's
raw distribution (softmax of the logits) and under the sampling distribution actually
used (repetition penalty, temperature, top-k, top-p: the same filters `sampling.sample`
applies, so a token `sample` can draw always has a finite log-probability here), the
entropy of the sampling distribution, and the top-`k` alternatives of both. Greedy
decoding (temperature 0) samples from a one-hot distribution: probability 1 for the
argmax, entropy 0.

The figures come from the same `[B, V]` logits and the same `seen` mask the sampler used;
one host transfer per step. The CUDA-graph path does not expose its per-step logits to
the host loop, so a generation that records log-probabilities decodes eagerly (see
`Generation`); it costs the graph's speed-up only when the inspector is on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..params import SamplingParams
from .sampling import apply_repetition_penalty, top_k_filter, top_p_filter

__all__ = ["TokenLogprobs", "record_logprobs", "sampling_logprobs"]


@dataclass(frozen=True)
class TokenLogprobs:
    """What the inspector shows for one generated token (natural-log probabilities)."""

    token: int
    logprob: float  # under the sampling distribution (-inf: could not have been drawn)
    raw_logprob: float  # under the model's raw distribution
    entropy: float  # of the sampling distribution, in nats
    top: tuple[tuple[int, float], ...]  # sampling distribution: (id, logprob), best first
    raw_top: tuple[tuple[int, float], ...]  # raw distribution: (id, logprob), best first

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @property
    def raw_prob(self) -> float:
        return math.exp(self.raw_logprob)


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


def record_logprobs(
    logits: Tensor, seen: Tensor, chosen: Tensor, params: SamplingParams, k: int
) -> list[TokenLogprobs]:
    """One `TokenLogprobs` per row for the ids `chosen` [B] drawn from `logits` [B, V]."""
    raw = torch.log_softmax(logits.float(), dim=-1)  # [B, V]
    used = sampling_logprobs(logits, seen, params)  # [B, V]
    p = used.exp()
    entropy = -(p * used.masked_fill(p == 0, 0.0)).sum(dim=-1)  # [B]; 0·log 0 = 0
    idx = chosen[:, None]  # [B, 1]
    k = max(1, min(int(k), logits.shape[-1]))
    top_v, top_i = torch.topk(used, k, dim=-1)  # [B, k]
    raw_v, raw_i = torch.topk(raw, k, dim=-1)  # [B, k]
    host = torch.cat(  # one transfer: [B, 3 + 4k]
        [
            used.gather(-1, idx),
            raw.gather(-1, idx),
            entropy[:, None],
            top_v,
            top_i.float(),
            raw_v,
            raw_i.float(),
        ],
        dim=-1,
    ).tolist()
    out = []
    for row, tok in zip(host, chosen.tolist(), strict=True):
        tv, ti = row[3 : 3 + k], row[3 + k : 3 + 2 * k]
        rv, ri = row[3 + 2 * k : 3 + 3 * k], row[3 + 3 * k : 3 + 4 * k]
        top = tuple((int(i), v) for i, v in zip(ti, tv, strict=True) if v > float("-inf"))
        out.append(
            TokenLogprobs(
                token=int(tok),
                logprob=row[0],
                raw_logprob=row[1],
                entropy=max(0.0, row[2]),
                top=top,
                raw_top=tuple((int(i), v) for i, v in zip(ri, rv, strict=True)),
            )
        )
    return out
