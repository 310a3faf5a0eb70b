"""Batch runs without a screen: the job, its rows, the chunked run loop and ETA maths.

Pure Python (no torch, no textual). The headless runner (``--mode batch --output``) and
the batch screen both run prompts through `run_chunks`, which calls the model's
`generate_batch` once per chunk. Each chunk reads the batch size and the sampling
parameters when it starts, so a change made while a run is going (the screen's ``+``/``-``
keys and sliders) applies from the next chunk on, and `cancel` stops before the next
chunk as well as inside the current one.

A model with ``continuous_batching = True`` (the loaded model, unless turned off) gets
all the rows of a run in one `generate_batch` call instead: it keeps `batch_size` prompts
in flight and starts the next queued one as soon as one finishes, so `run_chunks` reports
a prompt as started (a one-prompt `ChunkStarted`) when another finishes. The sampling
parameters are then read when each prompt starts; the batch size when the run starts.

`run_chunks` only *yields* events; the caller applies them to its `BatchRow` list on its
own thread (the screen: on the UI thread, from a throttled buffer).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal, TypeVar

from ..base.params import SamplingParams
from ..base.timings import TIMING_FIELDS, ReplyTimings
from ..protocols import BatchModel, BatchOutcome
from .prompts import clip_prompt

__all__ = [
    "ANSWERED",
    "BatchJob",
    "BatchRow",
    "ChunkFailed",
    "ChunkStarted",
    "PromptFinished",
    "RunEnded",
    "RunEvent",
    "RowStatus",
    "RunProgress",
    "apply_event",
    "eta_seconds",
    "run_chunks",
]

T = TypeVar("T")

RowStatus = Literal["queued", "running", "done", "stopped", "error"]

ANSWERED: tuple[str, ...] = ("length", "stop", "eos")
"""Finish reasons of a prompt that got its completion (anything else: not answered)."""


@dataclass
class BatchJob:
    """What to run: built by the CLI from its flags, run by the headless runner.

    `batch_size` None means the model's default; `output` None means JSONL on stdout.
    """

    prompts: list[str]
    params: SamplingParams
    batch_size: int | None = None
    output: str | None = None
    overwrite: bool = False
    """Start over even when `output` holds results of an earlier run of these prompts."""

    def rows(self) -> list[BatchRow]:
        """One queued row per prompt, in input order."""
        return [BatchRow(i, p) for i, p in enumerate(self.prompts)]


@dataclass
class BatchRow:
    """One prompt and what is known of its result (the screen's table is a view of these)."""

    index: int
    prompt: str
    status: RowStatus = "queued"
    completion: str = ""
    new_tokens: int | None = None
    seconds: float | None = None
    finish_reason: str | None = None
    truncated: bool = False
    error: str | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    """`TIMING_FIELDS` of the result (prompt tokens, prefill, first token, decode rate)."""

    @property
    def has_result(self) -> bool:
        return self.finish_reason is not None

    @property
    def answered(self) -> bool:
        return self.finish_reason in ANSWERED

    @property
    def tokens_per_second(self) -> float | None:
        if self.new_tokens and self.seconds:
            return self.new_tokens / self.seconds
        return None

    @property
    def final(self) -> bool:
        """The row has its final result (answered or failed): a rerun need not redo it.

        A cancelled row is not final: it was in flight when the run stopped.
        """
        return self.finish_reason in ANSWERED or self.finish_reason == "error"

    def apply(self, outcome: BatchOutcome) -> None:
        """Take the model's result for this prompt.

        ``finish_reason == "error"`` (the prompt could not run, e.g. token ids beyond the
        model's vocabulary) makes the row "error" with the outcome's reason.
        """
        self.completion = outcome.completion
        self.new_tokens = int(outcome.new_tokens)
        self.seconds = float(outcome.seconds)
        self.finish_reason = outcome.finish_reason
        self.truncated = bool(outcome.truncated)
        timings = getattr(outcome, "timings", None)  # fakes and wrappers may have none
        self.timing = timings.fields() if isinstance(timings, ReplyTimings) else {}
        failed = outcome.finish_reason == "error"
        self.error = (str(getattr(outcome, "error", "")) or "failed") if failed else None
        if failed:
            self.status = "error"
        else:
            self.status = "stopped" if outcome.finish_reason == "cancelled" else "done"

    def restore(self, record: Mapping[str, Any]) -> None:
        """Take a result read back from an earlier run's output (resume)."""
        self.completion = str(record.get("completion") or "")
        tokens, secs = record.get("new_tokens"), record.get("seconds")
        self.new_tokens = int(tokens) if isinstance(tokens, int | float) else None
        self.seconds = float(secs) if isinstance(secs, int | float) else None
        self.finish_reason = str(record.get("finish_reason"))
        self.error = str(record["error"]) if record.get("error") else None
        self.truncated = bool(record.get("truncated"))
        self.timing = {
            k: record[k] for k in TIMING_FIELDS if isinstance(record.get(k), int | float)
        }
        self.status = "error" if self.finish_reason == "error" else "done"

    def record(self) -> dict[str, Any]:
        """The fields written by `swamla_tui.batch.results` (`index` counts from 0, input order)."""
        return {
            "index": self.index,
            "prompt": self.prompt,
            "completion": self.completion,
            "new_tokens": self.new_tokens,
            "seconds": self.seconds,
            "finish_reason": self.finish_reason,
            "error": self.error,
            **{k: self.timing.get(k) for k in TIMING_FIELDS},
        }


def eta_seconds(elapsed: float, done: int, total: int) -> float | None:
    """Seconds left at the average pace so far; None before the first or after the last."""
    if 0 < done < total and elapsed > 0:
        return elapsed / done * (total - done)
    return None


@dataclass
class RunProgress:
    """One run over some rows: how far it got and how long it took (times from a clock)."""

    order: list[int] = field(default_factory=list)
    done: int = 0
    started: float = 0.0
    elapsed: float | None = None
    """Set when the run ended."""
    stopped: bool = False

    @property
    def total(self) -> int:
        return len(self.order)

    def eta(self, now: float) -> float | None:
        return eta_seconds(now - self.started, self.done, self.total)

    def end(self, now: float, *, stopped: bool) -> None:
        self.elapsed = now - self.started
        self.stopped = stopped


# -- the run loop ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkStarted:
    """The prompts at these row indices went to the model together (continuous batching:
    the rows now in flight, the one just started last)."""

    indices: tuple[int, ...]


@dataclass(frozen=True)
class PromptFinished:
    """The prompt at row `index` finished (its `outcome.index` counts within its chunk)."""

    index: int
    outcome: BatchOutcome


@dataclass(frozen=True)
class ChunkFailed:
    """The model raised while running these rows (`message`: one line)."""

    indices: tuple[int, ...]
    message: str


@dataclass(frozen=True)
class RunEnded:
    """The run is over: finished, stopped or failed."""


BatchEvent = ChunkStarted | PromptFinished
"""What `run_chunks` yields."""

RunEvent = ChunkStarted | PromptFinished | ChunkFailed | RunEnded
"""What a worker hands to the UI thread: `run_chunks`' events, then its failure and end."""


def _constant(value: T) -> Callable[[], T]:
    return lambda: value


def run_chunks(
    lm: BatchModel,
    prompts: Sequence[str],
    order: Sequence[int] | None = None,
    *,
    params: SamplingParams | Callable[[], SamplingParams],
    batch_size: int | Callable[[], int],
    cancel: threading.Event,
) -> Iterator[BatchEvent]:
    """Run `prompts` (the rows in `order`, default all) chunk by chunk; yield events.

    `params` and `batch_size` may be getters, read when each chunk starts. A chunk's
    prompts get a `ChunkStarted`, then one `PromptFinished` each as it finishes. Stops
    before the next chunk once `cancel` is set; prompts never started get no event, so
    the caller knows them as still queued. Errors of the model propagate.
    """
    todo = list(range(len(prompts))) if order is None else list(order)
    get_params = params if callable(params) else _constant(params)
    get_size = batch_size if callable(batch_size) else _constant(batch_size)
    if getattr(lm, "continuous_batching", False) is True:
        yield from _run_continuous(lm, prompts, todo, get_params, get_size, cancel)
        return
    pos = 0
    while pos < len(todo) and not cancel.is_set():
        size = max(1, int(get_size()))
        chunk = todo[pos : pos + size]
        pos += len(chunk)
        chunk_params = get_params()
        yield ChunkStarted(tuple(chunk))
        texts, cut = _clipped(lm, prompts, chunk)
        for outcome in lm.generate_batch(texts, chunk_params, batch_size=len(chunk), cancel=cancel):
            yield PromptFinished(chunk[outcome.index], _noted(outcome, outcome.index in cut))


def _clipped(
    lm: BatchModel, prompts: Sequence[str], idx: Sequence[int]
) -> tuple[list[str], set[int]]:
    """The texts of rows `idx` as the model may see them (`clip_prompt`: a huge line is
    cut to its tail before it is tokenized), and the positions that were cut."""
    limit = getattr(lm, "max_length", None)
    texts: list[str] = []
    cut: set[int] = set()
    for j, i in enumerate(idx):
        text, was_cut = clip_prompt(prompts[i], limit if isinstance(limit, int) else None)
        texts.append(text)
        if was_cut:
            cut.add(j)
    return texts, cut


def _noted(outcome: BatchOutcome, cut: bool) -> BatchOutcome:
    """A cut prompt's outcome says it was truncated (the row's note), whatever the
    tokenizer made of the tail."""
    if cut and not outcome.truncated and is_dataclass(outcome) and not isinstance(outcome, type):
        return replace(outcome, truncated=True)  # type: ignore[type-var]
    return outcome


def _run_continuous(
    lm: BatchModel,
    prompts: Sequence[str],
    todo: list[int],
    get_params: Callable[[], SamplingParams],
    get_size: Callable[[], int],
    cancel: threading.Event,
) -> Iterator[BatchEvent]:
    """`run_chunks` for a continuously batching model: one call over every row.

    The model admits prompts in order, one per finished one, so the events mirror it: the
    first `size` rows start at once, then one more after each finished prompt. Each
    `ChunkStarted` names every row in flight (the new one last), so a caller that marks
    the last chunk failed when the model raises marks all the rows it was running. `live` is
    the parameters object the model copies when it admits a prompt: it is refreshed from
    `get_params` after each finished prompt, before the model admits the next one (the
    model's generator only moves on when this one asks for the next outcome). Prompts
    that never started (cancelled while queued) get no event, as with chunks.
    """
    if cancel.is_set() or not todo:
        return
    size = max(1, int(get_size()))
    live = get_params().copy()
    started = [False] * len(todo)
    inflight: dict[int, None] = {}  # rows started and not finished, in start order
    nxt = 0

    def start(n: int) -> ChunkStarted | None:
        nonlocal nxt
        picked = 0
        while nxt < len(todo) and picked < n:
            if not started[nxt]:
                started[nxt] = True
                inflight[todo[nxt]] = None
                picked += 1
            nxt += 1
        return ChunkStarted(tuple(inflight)) if picked else None

    first = start(size)
    assert first is not None
    yield first
    texts, cut = _clipped(lm, prompts, todo)
    for outcome in lm.generate_batch(texts, live, batch_size=size, cancel=cancel):
        j = outcome.index
        outcome = _noted(outcome, j in cut)
        if not started[j]:
            if outcome.finish_reason == "cancelled":
                continue  # never started: still queued for the caller
            started[j] = True  # the model ran it sooner than mirrored: say so first
            inflight[todo[j]] = None
            yield ChunkStarted(tuple(inflight))
        inflight.pop(todo[j], None)
        yield PromptFinished(todo[j], outcome)
        if not cancel.is_set() and not all(started):
            fresh = get_params()
            for f in fields(live):
                setattr(live, f.name, getattr(fresh, f.name))
            event = start(1)
            if event is not None:
                yield event


def apply_event(rows: Sequence[BatchRow], run: RunProgress, event: RunEvent) -> list[BatchRow]:
    """Apply one event of `run` to `rows` (on the thread that owns them); the rows changed.

    A started chunk's rows turn "running"; a finished prompt takes its result; a failed
    chunk's unfinished rows turn "error"; at the end, rows of the run never started
    (the run was stopped) turn "stopped". Finished and failed rows count as done.
    """
    changed: list[BatchRow] = []
    if isinstance(event, ChunkStarted):
        for i in event.indices:
            rows[i].status = "running"
            changed.append(rows[i])
    elif isinstance(event, PromptFinished):
        rows[event.index].apply(event.outcome)
        run.done += 1
        changed.append(rows[event.index])
    elif isinstance(event, ChunkFailed):
        for i in event.indices:
            if rows[i].status in ("queued", "running"):
                rows[i].status, rows[i].error = "error", event.message
                run.done += 1
                changed.append(rows[i])
    else:
        for i in run.order:
            if rows[i].status == "queued":
                rows[i].status = "stopped"
                changed.append(rows[i])
    return changed
