"""``--logprobs N`` for headless batch runs: per-token probabilities in every JSONL row.

The batch engine (`generate_batch`) does not record log-probabilities; the streaming path
does (`lm.stream(..., logprobs=k)` -> `token_logprobs`, see `swamla_tui.engine.logprobs`).
`LogprobsModel` wraps a model so that its `generate_batch` runs each prompt of a chunk
through that stream, one prompt at a time, and yields outcomes carrying the records; the
batch core (`swamla_tui.batch.job.run_chunks`) and the headless runner use it unchanged. So a
seeded run seeds each prompt on its own (a plain batch run seeds each chunk): the
completions can differ from a run without ``--logprobs``, never the figures' meaning.

`LogprobRow` is the `BatchRow` that keeps them: its record has a ``logprobs`` list, one
entry per generated token (the EOS included), shaped as `token_record` says.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..base.errors import SwamlaError
from ..base.experts import TokenRouting
from ..base.params import SamplingParams
from ..protocols import BatchOutcome, BatchRecord, Model
from .job import BatchRow
from .results import FIELDS

__all__ = [
    "LOGPROB_FIELDS",
    "LogprobOutcome",
    "LogprobRow",
    "LogprobsModel",
    "StreamingModel",
    "token_record",
]

LOGPROB_FIELDS: tuple[str, ...] = (*FIELDS, "logprobs")
"""The JSONL fields of a ``--logprobs`` run (`swamla_tui.batch.results.FIELDS` plus ``logprobs``)."""


class StreamingModel(Model, Protocol):
    """What `LogprobsModel` needs: a model whose stream records (`LoadedModel`), and
    `decode` to name the tokens."""

    def decode(self, ids: Sequence[int]) -> str: ...


def _finite(x: float) -> float | None:
    """JSON has no infinities: a log-probability of -inf (cannot be drawn) is null."""
    return x if math.isfinite(x) else None


def token_record(rec: Any, text_of: Any) -> dict[str, Any]:
    """One token's entry in a row's ``logprobs`` list.

    ``{"token": id, "text": str, "logprob": float|null, "raw_logprob": float,
    "entropy": float, "top": [{"token", "text", "logprob"}...], "raw_top": [...]}``:
    ``logprob`` and ``top`` are under the sampling distribution (penalty, temperature,
    top-k, top-p), ``raw_*`` under the model's softmax; natural logs, best first.
    """
    return {
        "token": int(rec.token),
        "text": text_of(rec.token),
        "logprob": _finite(float(rec.logprob)),
        "raw_logprob": _finite(float(rec.raw_logprob)),
        "entropy": float(rec.entropy),
        "top": [{"token": i, "text": text_of(i), "logprob": _finite(v)} for i, v in rec.top],
        "raw_top": [
            {"token": i, "text": text_of(i), "logprob": _finite(v)} for i, v in rec.raw_top
        ],
    }


@dataclass(frozen=True)
class LogprobOutcome(BatchRecord):
    """A `BatchOutcome` with the prompt's per-token records."""

    logprobs: tuple[dict[str, Any], ...] = ()


class LogprobsModel:
    """`lm` as a `BatchModel` whose every prompt records its top-`k` log-probabilities."""

    def __init__(self, lm: StreamingModel, k: int) -> None:
        self.lm = lm
        self.k = int(k)
        self._texts: dict[int, str] = {}
        self.routes: list[TokenRouting | None] = []
        """Every recorded token's MoE routing (None: not an MoE model), for ``--expert-stats``."""

    @property
    def max_length(self) -> int:
        return int(self.lm.max_length)

    def encode(self, text: str) -> list[int]:
        return self.lm.encode(text)

    def default_batch_size(self) -> int:
        return int(self.lm.default_batch_size())

    def text_of(self, token: int) -> str:
        """The token decoded on its own (cached: alternatives repeat across steps)."""
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = self.lm.decode([token])
        return text

    def _one(
        self, index: int, text: str, params: SamplingParams, cancel: threading.Event
    ) -> LogprobOutcome:
        t0 = time.perf_counter()
        try:
            stream = self.lm.stream(text, params, logprobs=self.k)
        except SwamlaError as exc:  # an untokenizable prompt fails alone, as in a batch
            return LogprobOutcome(index, text, "", 0, 0.0, "error", error=str(exc))
        pieces: list[str] = []
        if cancel.is_set():
            stream.cancel()
        for piece in stream:
            pieces.append(piece)
            if cancel.is_set():
                stream.cancel()
        records = getattr(stream, "token_logprobs", [])
        self.routes.extend(getattr(r, "routing", None) for r in records)
        return LogprobOutcome(
            index=index,
            prompt=text,
            completion="".join(pieces),
            new_tokens=int(stream.new_tokens),
            seconds=time.perf_counter() - t0,
            finish_reason=stream.finish_reason or "length",
            truncated=bool(stream.truncated),
            logprobs=tuple(token_record(r, self.text_of) for r in records),
        )

    def generate_batch(
        self,
        texts: Sequence[str],
        params: SamplingParams | None = None,
        *,
        batch_size: int | None = None,
        stop: Sequence[str] = (),
        cancel: threading.Event | None = None,
    ) -> Iterator[BatchOutcome]:
        """Each prompt through the recording stream, in order (`batch_size` is unused)."""
        cancel = cancel or threading.Event()
        p = params if params is not None else SamplingParams()
        for i, text in enumerate(texts):
            if cancel.is_set():
                yield LogprobOutcome(i, text, "", 0, 0.0, "cancelled")
                continue
            yield self._one(i, text, p.copy(), cancel)


@dataclass
class LogprobRow(BatchRow):
    """A `BatchRow` that keeps its outcome's ``logprobs`` (and reads them back on resume)."""

    logprobs: list[dict[str, Any]] | None = field(default=None)

    @property
    def final(self) -> bool:
        """A row resumed from a run without ``--logprobs`` runs again to get them."""
        return super().final and (self.logprobs is not None or self.finish_reason == "error")

    def apply(self, outcome: BatchOutcome) -> None:
        super().apply(outcome)
        self.logprobs = list(getattr(outcome, "logprobs", ()))

    def restore(self, record: Mapping[str, Any]) -> None:
        super().restore(record)
        value = record.get("logprobs")
        self.logprobs = list(value) if isinstance(value, list) else None

    def record(self) -> dict[str, Any]:
        return {**super().record(), "logprobs": self.logprobs}
