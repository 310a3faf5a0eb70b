"""A/B: two checkpoints on the same prompts (``--mode batch --compare B``).

Pure Python (no torch, no textual), so the headless runner and a screen can both use it.
`check_compatible` refuses a second model whose vocabulary or tokenizer differs (the two
completions of a prompt must come from the same prompt tokens to be comparable).
`run_compare` runs both models chunk by chunk: each chunk goes to model A, then to model
B, with the one `SamplingParams` read when the chunk starts, so both get the same seed
and settings. `CompareRow` holds a prompt's two results; `record` gives the flat record
(`COMPARE_FIELDS`) the exports write, one column per model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..base.errors import SwamlaError
from ..base.params import SamplingParams
from ..protocols import BatchModel
from .job import BatchEvent, BatchRow, run_chunks

__all__ = [
    "COMPARE_FIELDS",
    "CompareError",
    "CompareRow",
    "Side",
    "check_compatible",
    "compare_record",
    "compare_rows",
    "run_compare",
]

Side = Literal["a", "b"]

COMPARE_FIELDS: tuple[str, ...] = (
    "prompt",
    "completion_a",
    "completion_b",
    "new_tokens_a",
    "new_tokens_b",
    "seconds_a",
    "seconds_b",
    "finish_reason_a",
    "finish_reason_b",
)
"""The export columns of an A/B run (`swamla_tui.batch.results` writes these instead of FIELDS)."""

# Texts both tokenizers must split the same way (ASCII, code, accents, CJK, emoji).
PROBES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x * 2  # code",
    "Café, naïve, Straße, 日本語, 🙂",
)


class CompareError(SwamlaError):
    """The second model cannot be compared with the first (vocabulary or tokenizer)."""


def _vocab(lm: object) -> int | None:
    config = getattr(lm, "config", None)
    size = getattr(config, "vocab_size", None)
    return int(size) if isinstance(size, int) else None


def check_compatible(a: BatchModel, b: BatchModel, *, names: tuple[str, str] = ("A", "B")) -> None:
    """Raise `CompareError` (one line) unless `a` and `b` share vocabulary and tokenizer."""
    va, vb = _vocab(a), _vocab(b)
    if va is not None and vb is not None and va != vb:
        raise CompareError(
            f"cannot compare: {names[0]} has a vocabulary of {va:,} tokens, {names[1]} {vb:,}"
        )
    for text in PROBES:
        if a.encode(text) != b.encode(text):
            raise CompareError(
                f"cannot compare: {names[0]} and {names[1]} use different tokenizers "
                f"(they split {text!r} differently)"
            )


@dataclass
class CompareRow:
    """One prompt and both models' results (`a`, `b`: the same `BatchRow` as a plain run)."""

    index: int
    prompt: str
    a: BatchRow = field(init=False)
    b: BatchRow = field(init=False)

    def __post_init__(self) -> None:
        self.a = BatchRow(self.index, self.prompt)
        self.b = BatchRow(self.index, self.prompt)

    def side(self, side: Side) -> BatchRow:
        return self.a if side == "a" else self.b

    @property
    def has_result(self) -> bool:
        return self.a.has_result and self.b.has_result

    @property
    def answered(self) -> bool:
        return self.a.answered and self.b.answered

    def record(self) -> dict[str, Any]:
        """`COMPARE_FIELDS` (plus `index` for the order)."""
        return compare_record(self.a, self.b)


def compare_record(a: BatchRow, b: BatchRow) -> dict[str, Any]:
    """The flat record of one prompt's two results (`COMPARE_FIELDS` plus `index`).

    A side that failed has its error as its completion (an A/B export has no error column).
    """
    rec: dict[str, Any] = {"index": a.index, "prompt": a.prompt}
    for suffix, row in (("a", a), ("b", b)):
        side = row.record()
        for key in ("completion", "new_tokens", "seconds", "finish_reason"):
            rec[f"{key}_{suffix}"] = side[key]
        if row.error and not row.completion:
            rec[f"completion_{suffix}"] = f"error: {row.error}"
    return rec


def compare_rows(prompts: Sequence[str]) -> list[CompareRow]:
    return [CompareRow(i, p) for i, p in enumerate(prompts)]


def run_compare(
    a: BatchModel,
    b: BatchModel,
    prompts: Sequence[str],
    order: Sequence[int] | None = None,
    *,
    params: SamplingParams | Callable[[], SamplingParams],
    batch_size: int | Callable[[], int],
    cancel: threading.Event,
) -> Iterator[tuple[Side, BatchEvent]]:
    """The rows in `order` (default all), each chunk to `a`, then to `b`, with the same
    params; yields (side, event).

    The params and the batch size are read once per chunk (getters may change between
    chunks: the batch view's sliders and keys) and handed to both models, so a seeded run
    gives each model the same sampling stream. Each side's chunk is one `run_chunks` call.
    """
    get_params = params if callable(params) else (lambda: params)
    get_size = batch_size if callable(batch_size) else (lambda: batch_size)
    todo = list(range(len(prompts))) if order is None else list(order)
    pos = 0
    while pos < len(todo):
        if cancel.is_set():
            return
        chunk = todo[pos : pos + max(1, int(get_size()))]
        pos += len(chunk)
        chunk_params = get_params()
        sides: tuple[tuple[Side, BatchModel], ...] = (("a", a), ("b", b))
        for side, lm in sides:
            for event in run_chunks(
                lm, prompts, chunk, params=chunk_params, batch_size=len(chunk), cancel=cancel
            ):
                yield side, event
