"""One generated token with its probabilities: the one record type the engine writes and
the inspector, the API and ``--logprobs`` read (torch-free, so the chat core can hold it).

The per-prompt records built on it, for orientation: `engine.batch_run.BatchResult` (one
prompt's completion, finish reason, timing; ``token_logprobs`` when asked), the torch-free
`protocols.BatchRecord` (what a front end or a fake yields for one prompt), its extension
`batch.logprobs.LogprobRow` (plus the JSON-ready per-token records) and `batch.job.BatchRow`
(a row of a run: status, result or error, the two sides of an A/B run in
`batch.compare.CompareRow`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from .experts import TokenRouting

__all__ = ["TokenLogprobs", "TokenRecord"]


class TokenRecord(Protocol):
    """Anything with a token record's fields (a `TokenLogprobs`, or a test's stand-in)."""

    @property
    def token(self) -> int: ...
    @property
    def logprob(self) -> float: ...
    @property
    def raw_logprob(self) -> float: ...
    @property
    def entropy(self) -> float: ...
    @property
    def top(self) -> tuple[tuple[int, float], ...]: ...
    @property
    def raw_top(self) -> tuple[tuple[int, float], ...]: ...


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token (natural-log probabilities; NaN: not known)."""

    token: int
    logprob: float  # under the sampling distribution (-inf: could not have been drawn)
    raw_logprob: float  # under the model's raw distribution
    entropy: float  # of the sampling distribution, in nats
    top: tuple[tuple[int, float], ...]  # sampling distribution: (id, logprob), best first
    raw_top: tuple[tuple[int, float], ...]  # raw distribution: (id, logprob), best first
    routing: TokenRouting | None = None  # MoE experts / Engram gates, when recorded

    @classmethod
    def of(cls, r: TokenRecord) -> TokenLogprobs:
        """`r` itself when it is one; else a frozen copy of its fields."""
        if isinstance(r, TokenLogprobs):
            return r
        routing = getattr(r, "routing", None)
        return cls(
            r.token, r.logprob, r.raw_logprob, r.entropy, tuple(r.top), tuple(r.raw_top), routing
        )

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @property
    def raw_prob(self) -> float:
        return math.exp(self.raw_logprob)
