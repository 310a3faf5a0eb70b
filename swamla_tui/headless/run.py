"""Batch mode without a screen: ``--mode batch --output FILE`` or stdout that is not a terminal.

The CLI builds a `BatchJob` (prompts from ``--prompts_file`` or the original script's five
default prompts, sampling flags, batch size, output); `run_headless` runs it through
`swamla_tui.batch.job.run_chunks`. With an output file every finished row is journalled at
once (`swamla_tui.batch.journal`: a kill loses only the rows in flight, a rerun skips the rows
done) and the output is written in input order when the run ends, in the format its
extension names (.jsonl, .csv, .md); without one, stdout gets JSONL in input order.
Progress and warnings go to stderr so stdout stays machine-readable. SIGTERM stops a run
like Ctrl+C: finished rows are kept, the exit status is 143 (130 for Ctrl+C).

``--logprobs N`` (JSONL only) runs the prompts through `swamla_tui.batch.logprobs`: each
row gains a ``logprobs`` list (`LOGPROB_FIELDS`), journalled and resumed like the rest.

Failures the user can cause (unknown output format, unwritable output) raise
`SwamlaError`; `cli.main` turns them into one line ``swamla-tui: error: ...`` and exit
status 1.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO, cast

from ..base.errors import SwamlaError
from ..base.experts import format_summary, summarise, tally_routes, write_summary
from ..base.paths import require_writable_target
from ..base.safe_text import json_line_safe, visible
from ..batch.job import BatchJob, BatchRow, PromptFinished, eta_seconds, run_chunks
from ..batch.journal import Journal, finish, journal_path, open_journal, read_journal
from ..batch.logprobs import LOGPROB_FIELDS, LogprobRow, LogprobsModel, StreamingModel
from ..batch.prompts import clip_prompt
from ..batch.results import FIELDS, format_for, write_results
from ..protocols import BatchModel, Loader, Model

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Progress",
    "ResultSink",
    "Terminated",
    "check_output",
    "finished_run",
    "output_lock",
    "run_headless",
]


def check_output(output: str) -> None:
    """Fail before loading the model when the output cannot be written."""
    format_for(output)  # unknown extension -> SwamlaError
    target = Path(output)
    if target.is_dir():
        raise SwamlaError(f"{output}: is a directory, give a file name (.jsonl, .csv or .md)")
    parent = target.parent
    if not parent.is_dir():
        raise SwamlaError(f"cannot write {output}: folder {parent} does not exist")
    require_writable_target(target, "output file")  # a FIFO would block the first write
    require_writable_target(journal_path(target), "output journal")


@contextmanager
def output_lock(output: str | None) -> Iterator[None]:
    """Hold an exclusive lock on `output` while inside: a second run on the same file
    refuses at once (before loading its model) instead of redoing and interleaving rows.

    The lock is ``flock`` on a hidden sidecar ``.NAME.lock`` beside the output (not on
    the output itself: the finished output replaces it by rename, which would drop a lock
    held on the old file). The kernel releases it when the process dies, so a killed run
    leaves no stale lock; the sidecar is removed at the end. Without ``fcntl`` (Windows),
    or on a file system without locks, there is no lock.
    """
    if not output or fcntl is None:
        yield
        return
    target = Path(output)
    lock = target.with_name(f".{target.name}.lock")
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    while True:
        try:
            fd = os.open(lock, flags, 0o644)
        except OSError as exc:
            raise SwamlaError(f"cannot lock {output}: {lock}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SwamlaError(f"cannot lock {output}: {lock} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SwamlaError(
                f"{output}: another swamla-tui run is writing it (lock {lock.name}); "
                "wait for it to finish, or give another --output"
            ) from None
        except OSError:  # no locks on this file system: run unlocked
            os.close(fd)
            yield
            return
        try:  # the holder before us may have removed the file we locked: lock the new one
            current = os.stat(lock, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = -1
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        yield
    finally:
        with suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def finished_run(job: BatchJob) -> list[dict[str, object]] | None:
    """Read what an earlier run of `job` left, before any model loads: results of another
    prompts file are refused here (`read_journal`); the records when every prompt already
    has its result in input order (the JSONL output is complete: nothing to load)."""
    if not job.output or job.overwrite:
        return None
    done, _ = read_journal(journal_path(job.output), job.prompts)
    if format_for(job.output) != "jsonl" or list(done) != list(range(len(job.prompts))):
        return None
    return list(done.values())


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
        already: int = 0,
    ) -> None:
        self.total = total
        self.stream = stream
        self.clock = clock
        self.t0 = clock()
        self.already = already
        """Rows done by an earlier run (resume): counted, but not in the pace or ETA."""
        self.done = already
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
        eta = eta_seconds(elapsed, self.done - self.already, self.total - self.already)
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
        if self._dirty or self.tty or self.done == self.already:
            self._emit(final=True)


class _StdoutWriter:
    """JSONL records on stdout in input order, each written as soon as its turn comes."""

    def __init__(self, stream: TextIO, fields: Sequence[str] = FIELDS) -> None:
        self.stream = stream
        self.fields = tuple(fields)
        self.next = 0

    def push(self, rows: Sequence[BatchRow]) -> None:
        while self.next < len(rows) and rows[self.next].has_result:
            rec = {k: rows[self.next].record()[k] for k in self.fields}
            try:  # json_line_safe: same JSON value, no raw C1 controls on a terminal
                self.stream.write(json_line_safe(json.dumps(rec, ensure_ascii=False)) + "\n")
            except UnicodeEncodeError:  # a stdout that is not UTF-8: escape, still JSON
                self.stream.write(json.dumps(rec) + "\n")
            self.next += 1
        self.stream.flush()


def _truncation_warning(lm: Model, row: BatchRow) -> str:
    text, cut = clip_prompt(row.prompt, lm.max_length)
    try:  # a huge line is never tokenized whole, not even for this count
        size = f" ({len(row.prompt):,} characters)" if cut else f" ({len(lm.encode(text))} tokens)"
    except Exception:  # noqa: BLE001 - the count is only a detail
        size = ""
    return (
        f"swamla-tui: warning: prompt {row.index + 1}{size} is longer than max_length "
        f"{lm.max_length}: only its last {lm.max_length} tokens were used"
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop the run the way Ctrl+C does (exit status 143)."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` in the main thread, as SIGINT does.

    Outside the main thread (where Python cannot install handlers) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ResultSink:
    """Where finished rows go: the journal (output file) or stdout, and the progress line.

    `start` reads back what an earlier run finished (resume); `take` records one finished
    row; `close` writes the output and the closing line and returns the exit status. The
    torchrun driver (`swamla_tui.headless.distributed`) feeds rank 0's sink with every rank's rows.
    """

    def __init__(
        self, job: BatchJob, lm: Model, err: TextIO, out: TextIO, *, logprobs: bool = False
    ) -> None:
        self.job, self.lm, self.err = job, lm, err
        self.fields = LOGPROB_FIELDS if logprobs else FIELDS
        self.rows: Sequence[BatchRow] = (
            [LogprobRow(i, p) for i, p in enumerate(job.prompts)] if logprobs else job.rows()
        )
        self.journal: Journal | None = None
        self.stdout = None if job.output else _StdoutWriter(out, self.fields)
        self.progress: Progress | None = None

    def start(self) -> list[int]:
        """Open the journal; the row indices still to run, in input order."""
        n = len(self.rows)
        if self.job.output:
            self.journal, done = open_journal(
                self.job.output, self.job.prompts, overwrite=self.job.overwrite
            )
            for i, rec in done.items():
                self.rows[i].restore(rec)
            if done:
                print(f"resuming: {len(done):,} of {n:,} done", file=self.err, flush=True)
        todo = [r.index for r in self.rows if not r.final]
        self.progress = Progress(n, self.err, already=n - len(todo))
        return todo

    def take(self, row: BatchRow) -> None:
        """`row` (one of `rows`) just got its result."""
        assert self.progress is not None
        if self.journal is not None and row.final:
            self.journal.append(row.record())
        if row.truncated:
            self.progress.note(_truncation_warning(self.lm, row))
        self.progress.advance(row.new_tokens or 0)
        if self.stdout is not None:
            self.stdout.push(self.rows)

    def close(self, stopped: KeyboardInterrupt | None) -> int:
        """Write the output; 0 all answered, 1 some not, 130 Ctrl+C, 143 SIGTERM."""
        assert self.progress is not None
        self.progress.finish()
        rows, n, output = self.rows, len(self.rows), self.job.output
        if self.journal is not None and output:
            if all(r.final for r in rows) and self.fields == FIELDS:
                finish(self.journal, output, [r.record() for r in rows])
            elif all(r.final for r in rows):  # --logprobs: JSONL, the journal is the output
                self.journal.close()
                write_results([r.record() for r in rows], output, self.fields)
            else:  # stopped: the journal stays for a rerun; CSV/MD get what is finished
                self.journal.close()
                if self.journal.path != Path(output):
                    write_results([r.record() for r in rows if r.final], output)
        answered = sum(1 for r in rows if r.answered)
        failed = sum(1 for r in rows if r.status == "error")
        written = f", written to {output}" if output else ""
        if failed:
            written = f", {failed} failed{written}"
        if stopped is not None:
            what = "terminated" if isinstance(stopped, Terminated) else "interrupted"
            again = " (run it again to resume)" if output else ""
            print(
                f"swamla-tui: {what}: {answered} of {n} prompts answered{written}{again}",
                file=self.err,
            )
            return 143 if isinstance(stopped, Terminated) else 130
        elapsed = time.perf_counter() - self.progress.t0
        print(f"… Done: {answered}/{n} prompts in {elapsed:.1f} s{written}", file=self.err)
        return 0 if answered == n else 1


def announce(err: TextIO, todo: int, batch_size: int, output: str | None) -> None:
    print(
        f"… Running {todo} prompt{'s' if todo != 1 else ''} "
        f"in batches of {batch_size} → {output or 'stdout'}",
        file=err,
        flush=True,
    )


def run_headless(
    job: BatchJob,
    loader: Loader,
    *,
    err: TextIO | None = None,
    out: TextIO | None = None,
    logprobs: int | None = None,
    expert_stats: str | None = None,
) -> int:
    """Run every prompt of `job` (those not done by an earlier run) and write the results.

    `expert_stats` (with `logprobs`): the MoE summary of the tokens generated by this run
    as JSON (`base.experts`); rows resumed from an earlier run are not in it.

    `logprobs` k: every row records its tokens' log-probabilities and top-k alternatives
    (through `LogprobsModel`; the output must be JSONL).

    Returns the exit status: 0 every prompt answered; 1 some were not (a failed prompt);
    130 interrupted (Ctrl+C), 143 terminated (SIGTERM), the finished rows kept; 141
    stdout closed early (``| head``).
    """
    err = err if err is not None else sys.stderr
    out = out if out is not None else sys.stdout
    if job.output:  # every refusal that needs no model comes before the load
        check_output(job.output)
        if logprobs and format_for(job.output) != "jsonl":
            raise SwamlaError(f"--logprobs writes JSONL only, not {visible(job.output)}")
        records = finished_run(job)
        if records is not None:
            failed = sum(1 for r in records if r.get("finish_reason") == "error")
            print(
                f"… {visible(job.output)}: all {len(records):,} prompts already have their "
                f"results{f' ({failed} failed)' if failed else ''} (--overwrite runs them again)",
                file=err,
            )
            return 1 if failed else 0  # as the run that wrote them
    with output_lock(job.output):
        return _run_headless(job, loader, err, out, logprobs, expert_stats)


def _run_headless(
    job: BatchJob,
    loader: Loader,
    err: TextIO,
    out: TextIO,
    logprobs: int | None,
    expert_stats: str | None,
) -> int:
    lm = loader(lambda text: print(f"… {visible(text)}", file=err, flush=True))
    for notice in lm.notices:
        print(f"note: {visible(notice)}", file=err)
    batch_size = job.batch_size or lm.default_batch_size()
    sink = ResultSink(job, lm, err, out, logprobs=bool(logprobs))
    runner: BatchModel = lm
    if logprobs:
        if not callable(getattr(lm, "decode", None)):
            raise SwamlaError("--logprobs: this model cannot decode tokens")
        runner = LogprobsModel(cast(StreamingModel, lm), logprobs)
    cancel = threading.Event()
    stopped: KeyboardInterrupt | None = None
    todo: Sequence[int] = range(len(job.prompts))
    with sigterm_as_interrupt():
        try:
            todo = sink.start()
            announce(err, len(todo), batch_size, job.output)
            for event in run_chunks(
                runner, job.prompts, todo, params=job.params, batch_size=batch_size, cancel=cancel
            ):
                if isinstance(event, PromptFinished):
                    row = sink.rows[event.index]
                    row.apply(event.outcome)
                    sink.take(row)
        except KeyboardInterrupt as exc:  # Ctrl+C, or SIGTERM (`Terminated`)
            cancel.set()
            stopped = exc
        except BrokenPipeError:  # `... | head`: the reader is gone, stop quietly
            cancel.set()
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, out.fileno())
            except (OSError, ValueError):
                pass
            return 141
        status = sink.close(stopped)
        if expert_stats and isinstance(runner, LogprobsModel):
            _write_expert_stats(runner, expert_stats, err, resumed=len(job.prompts) - len(todo))
        return status


def _write_expert_stats(runner: LogprobsModel, path: str, err: TextIO, *, resumed: int) -> None:
    notes = [f"{resumed} rows resumed from an earlier run are not counted"] if resumed else []
    stats = summarise("batch", *tally_routes(runner.routes), notes=notes)
    write_summary(stats, path)
    print(format_summary(stats), file=err)
