"""Batch mode without a screen: ``--mode batch --output FILE`` or stdout that is not a terminal.

The CLI builds a `BatchJob` (prompts from ``--prompts_file`` or the original script's five
default prompts, sampling flags, batch size, output); `run_headless` runs it through
`swamla_tui.batch.run_chunks` and writes one record per prompt in input order: to the
job's output in the format its extension names (.jsonl, .csv, .md), or to stdout as
JSONL. Progress and warnings go to stderr so stdout stays machine-readable.

Failures the user can cause (unknown output format, unwritable output) raise
`SwamlaError`; `cli.main` turns them into one line ``swamla-tui: error: ...`` and exit
status 1.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .batch import BatchJob, BatchRow, PromptFinished, eta_seconds, run_chunks
from .errors import SwamlaError
from .export import FIELDS, format_for, write_results
from .protocols import Loader, Model
from .safe_text import json_line_safe, visible

__all__ = ["Progress", "check_output", "run_headless"]


def check_output(output: str) -> None:
    """Fail before loading the model when the output cannot be written."""
    format_for(output)  # unknown extension -> SwamlaError
    target = Path(output)
    if target.is_dir():
        raise SwamlaError(f"{output}: is a directory, give a file name (.jsonl, .csv or .md)")
    parent = target.parent
    if not parent.is_dir():
        raise SwamlaError(f"cannot write {output}: folder {parent} does not exist")


class Progress:
    """``[12/40] 3.1 s · 41.2 tok/s · ETA 9 s`` lines on a stream (stderr).

    On a terminal the line is rewritten in place (at most 10 times a second); elsewhere
    (a log file, a CI job) a new line is printed at most every `every` seconds, and the
    final count always.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.perf_counter,
        every: float = 2.0,
    ) -> None:
        self.total = total
        self.stream = stream
        self.clock = clock
        self.t0 = clock()
        self.done = 0
        self.tokens = 0
        try:
            self.tty = bool(stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.every = 0.1 if self.tty else every
        self._last = -1e9
        self._dirty = False

    def line(self) -> str:
        elapsed = self.clock() - self.t0
        parts = [f"[{self.done}/{self.total}] {elapsed:.1f} s"]
        if elapsed > 0 and self.tokens:
            parts.append(f"{self.tokens / elapsed:.1f} tok/s")
        eta = eta_seconds(elapsed, self.done, self.total)
        if eta is not None:
            parts.append(f"ETA {eta:.0f} s")
        return " · ".join(parts)

    def _emit(self, final: bool = False) -> None:
        text = self.line()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._dirty = False

    def advance(self, new_tokens: int) -> None:
        self.done += 1
        self.tokens += new_tokens
        self._dirty = True
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self._emit()

    def note(self, text: str) -> None:
        """A message on its own line (the progress line, on a terminal, is redrawn after)."""
        if self.tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._dirty or self.tty or self.done == 0:
            self._emit(final=True)


class _StdoutWriter:
    """JSONL records on stdout in input order, each written as soon as its turn comes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.next = 0

    def push(self, rows: list[BatchRow]) -> None:
        while self.next < len(rows) and rows[self.next].has_result:
            rec = {k: rows[self.next].record()[k] for k in FIELDS}
            try:  # json_line_safe: same JSON value, no raw C1 controls on a terminal
                self.stream.write(json_line_safe(json.dumps(rec, ensure_ascii=False)) + "\n")
            except UnicodeEncodeError:  # a stdout that is not UTF-8: escape, still JSON
                self.stream.write(json.dumps(rec) + "\n")
            self.next += 1
        self.stream.flush()


def _truncation_warning(lm: Model, row: BatchRow) -> str:
    try:
        size = f" ({len(lm.encode(row.prompt))} tokens)"
    except Exception:  # noqa: BLE001 - the count is only a detail
        size = ""
    return (
        f"swamla-tui: warning: prompt {row.index + 1}{size} is longer than max_length "
        f"{lm.max_length}: only its last {lm.max_length} tokens were used"
    )


def run_headless(
    job: BatchJob,
    loader: Loader,
    *,
    err: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """Run every prompt of `job` and write the results; returns the exit status.

    0: every prompt answered; 1: some were not; 130: interrupted (Ctrl+C), the finished
    ones written; 141: stdout closed early (``| head``).
    """
    err = err if err is not None else sys.stderr
    out = out if out is not None else sys.stdout
    if job.output:
        check_output(job.output)

    lm = loader(lambda text: print(f"… {visible(text)}", file=err, flush=True))
    for notice in lm.notices:
        print(f"note: {visible(notice)}", file=err)
    batch_size = job.batch_size or lm.default_batch_size()
    n = len(job.prompts)
    print(
        f"… Running {n} prompt{'s' if n != 1 else ''} "
        f"in batches of {batch_size} → {job.output or 'stdout'}",
        file=err,
        flush=True,
    )

    rows = job.rows()
    progress = Progress(n, err)
    stdout = None if job.output else _StdoutWriter(out)
    cancel = threading.Event()
    interrupted = False
    try:
        for event in run_chunks(
            lm, job.prompts, params=job.params, batch_size=batch_size, cancel=cancel
        ):
            if not isinstance(event, PromptFinished):
                continue
            row = rows[event.index]
            row.apply(event.outcome)
            if row.truncated:
                progress.note(_truncation_warning(lm, row))
            progress.advance(row.new_tokens or 0)
            if stdout is not None:
                stdout.push(rows)
    except KeyboardInterrupt:
        cancel.set()
        interrupted = True
    except BrokenPipeError:  # `... | head`: the reader is gone, stop quietly
        cancel.set()
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
        except (OSError, ValueError):
            pass
        return 141
    progress.finish()

    finished = [r.record() for r in rows if r.has_result]
    if job.output:
        write_results(finished, job.output)
    answered = sum(1 for r in rows if r.answered)
    written = f", written to {job.output}" if job.output else ""
    if interrupted:
        print(f"swamla-tui: interrupted: {answered} of {n} prompts answered{written}", file=err)
        return 130
    elapsed = time.perf_counter() - progress.t0
    print(f"… Done: {answered}/{n} prompts in {elapsed:.1f} s{written}", file=err)
    return 0 if answered == n else 1
