"""The Textual-free batch core: chunked run loop, row state, ETA maths."""

from __future__ import annotations

import threading

import pytest

from swamla_tui.base.params import SamplingParams
from swamla_tui.base.timings import TIMING_FIELDS
from swamla_tui.batch.job import (
    BatchJob,
    BatchRow,
    ChunkFailed,
    ChunkStarted,
    PromptFinished,
    RunEnded,
    RunProgress,
    apply_event,
    eta_seconds,
    run_chunks,
)
from tests.support.fakes import Outcome


class Echo:
    """Answers each prompt upper-cased, last prompt of a chunk first (like rows finishing)."""

    max_length = 64

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], float]] = []

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def default_batch_size(self) -> int:
        return 2

    def generate_batch(self, texts, params=None, *, batch_size=None, stop=(), cancel=None):
        self.calls.append((list(texts), params.temperature))
        for i in reversed(range(len(texts))):
            yield Outcome(i, texts[i], texts[i].upper(), 3, 0.5, "length")


PROMPTS = ["a", "b", "c", "d", "e"]


def test_chunks_read_size_and_params_when_each_starts():
    lm, sizes = Echo(), iter([2, 1, 5])
    live = {"params": SamplingParams(temperature=0.1)}
    events = []
    for event in run_chunks(
        lm,
        PROMPTS,
        params=lambda: live["params"],
        batch_size=lambda: next(sizes),
        cancel=threading.Event(),
    ):
        events.append(event)
        live["params"] = SamplingParams(temperature=live["params"].temperature + 0.1)
    assert [texts for texts, _ in lm.calls] == [["a", "b"], ["c"], ["d", "e"]]
    assert [round(t, 1) for _, t in lm.calls] == [0.1, 0.4, 0.6]
    assert events[0] == ChunkStarted((0, 1))
    finished = [e for e in events if isinstance(e, PromptFinished)]
    # global row indices, even though each outcome counts within its chunk
    assert [e.index for e in finished] == [1, 0, 2, 4, 3]
    assert all(e.outcome.completion == PROMPTS[e.index].upper() for e in finished)


def test_order_and_cancel_stop_before_the_next_chunk():
    lm, cancel = Echo(), threading.Event()
    seen = []
    for event in run_chunks(
        lm, PROMPTS, [4, 2, 0], params=SamplingParams(), batch_size=1, cancel=cancel
    ):
        seen.append(event)
        if isinstance(event, PromptFinished):
            cancel.set()
    assert [texts for texts, _ in lm.calls] == [["e"]]
    finished = seen[1]
    assert isinstance(finished, PromptFinished)
    assert seen == [ChunkStarted((4,)), PromptFinished(4, finished.outcome)]


def test_model_errors_propagate():
    class Broken(Echo):
        def generate_batch(self, *args, **kwargs):
            raise RuntimeError("CUDA out of memory")
            yield

    with pytest.raises(RuntimeError):
        list(
            run_chunks(
                Broken(), PROMPTS, params=SamplingParams(), batch_size=2, cancel=threading.Event()
            )
        )


def test_apply_event_row_states():
    rows = BatchJob(list(PROMPTS), SamplingParams()).rows()
    run = RunProgress([0, 1, 2, 3])
    assert [r.index for r in apply_event(rows, run, ChunkStarted((0, 1)))] == [0, 1]
    assert [r.status for r in rows[:3]] == ["running", "running", "queued"]
    apply_event(rows, run, PromptFinished(1, Outcome(0, "b", "B", 3, 0.5, "length", True)))
    assert (rows[1].status, rows[1].completion, rows[1].truncated) == ("done", "B", True)
    assert rows[1].answered and rows[1].tokens_per_second == 6.0
    apply_event(rows, run, ChunkFailed((0, 1), "RuntimeError: boom"))
    assert (rows[0].status, rows[0].error) == ("error", "RuntimeError: boom")
    assert rows[1].status == "done"  # finished before the failure: kept
    apply_event(rows, run, PromptFinished(2, Outcome(0, "c", "", 0, 0.0, "cancelled")))
    assert rows[2].status == "stopped" and not rows[2].answered
    changed = apply_event(rows, run, RunEnded())
    assert [r.index for r in changed] == [3]  # row 4 was not part of the run
    assert [r.status for r in rows] == ["error", "done", "stopped", "stopped", "queued"]
    assert run.done == 3
    assert rows[1].record() == {
        "index": 1,
        "prompt": "b",
        "completion": "B",
        "new_tokens": 3,
        "seconds": 0.5,
        "finish_reason": "length",
        "error": None,
        **dict.fromkeys(TIMING_FIELDS),  # the fake outcome measured none
    }


def test_eta():
    assert eta_seconds(10.0, 2, 6) == pytest.approx(20.0)
    assert eta_seconds(10.0, 0, 6) is None
    assert eta_seconds(10.0, 6, 6) is None
    run = RunProgress([0, 1, 2, 3], done=1, started=100.0)
    assert run.eta(104.0) == pytest.approx(12.0)
    run.end(110.0, stopped=True)
    assert run.elapsed == 10.0 and run.stopped


def test_a_failed_outcome_makes_the_row_failed_with_its_reason():
    row = BatchRow(0, "big")
    row.apply(Outcome(0, "big", "", 0, 0.0, "error", error="token id 600 is beyond the vocabulary"))
    assert (row.status, row.error, row.answered, row.final) == (
        "error",
        "token id 600 is beyond the vocabulary",
        False,
        True,
    )
    assert row.record()["error"] == "token id 600 is beyond the vocabulary"
    row.apply(Outcome(0, "big", "x", 1, 0.1, "cancelled"))
    assert (row.status, row.error, row.final) == ("stopped", None, False)
    again = BatchRow(0, "big")
    again.restore(row.record() | {"finish_reason": "error", "error": "why"})
    assert (again.status, again.error, again.final) == ("error", "why", True)


def test_a_huge_prompt_is_cut_to_its_tail_before_the_model_sees_it():
    """Only the last max_length tokens can reach the model: the rest of a 10 MB line is
    never tokenized (issue 21 item 8), and the row says it was truncated."""
    from swamla_tui.batch.prompts import CHARS_PER_TOKEN
    from tests.support.batch import EchoBatchLM

    lm = EchoBatchLM()
    lm.max_length = 16
    huge = "x" * 10_000_000 + "the end"
    events = list(
        run_chunks(
            lm, ["short", huge], params=SamplingParams(), batch_size=2, cancel=threading.Event()
        )
    )
    assert lm.ran == ["short", huge[-16 * CHARS_PER_TOKEN :]]
    finished = {e.index: e.outcome for e in events if isinstance(e, PromptFinished)}
    assert finished[1].truncated and not finished[0].truncated
