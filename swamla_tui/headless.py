"""Batch mode without a screen: ``--mode batch --output FILE`` or stdout that is not a terminal.

Prompts come from ``--prompts_file`` (or the original script's five default prompts), run
in batches through `LoadedModel.generate_batch`, and are written one record per prompt in
input order: to ``--output`` in the format its extension names (.jsonl, .csv, .md), or to
stdout as JSONL. Progress and warnings go to stderr so stdout stays machine-readable.

Failures the user can cause (missing or non-UTF-8 prompts file, unknown output format,
unwritable output) raise `SwamlaError`; `cli.main` turns them into one line
``swamla-tui: error: ...`` and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .errors import SwamlaError
from .export import FIELDS, format_for, write_results
from .prompts_file import DEFAULT_PROMPTS, read_prompts

__all__ = ["run_headless", "load_batch_prompts", "Progress"]

Loader = Callable[[Callable[[str], None]], Any]

ANSWERED = ("length", "stop", "eos")
"""Finish reasons of a prompt that got its completion (anything else: not answered)."""


def load_batch_prompts(path: str | os.PathLike[str] | None) -> list[str]:
    """The prompts of `path`, or the default prompts when `path` is None or empty."""
    if not path:
        return list(DEFAULT_PROMPTS)
    prompts = read_prompts(path)
    if not prompts:
        raise SwamlaError(f"{os.fspath(path)}: the file has no prompts (all lines are blank)")
    return prompts


def _check_output(output: str) -> None:
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
        if 0 < self.done < self.total and elapsed > 0:
            eta = elapsed / self.done * (self.total - self.done)
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

    def push(self, results: list[Any]) -> None:
        while self.next < len(results) and results[self.next] is not None:
            rec = {k: getattr(results[self.next], k) for k in FIELDS}
            try:
                self.stream.write(json.dumps(rec, ensure_ascii=False) + "\n")
            except UnicodeEncodeError:  # a stdout that is not UTF-8: escape, still JSON
                self.stream.write(json.dumps(rec) + "\n")
            self.next += 1
        self.stream.flush()


def _truncation_warning(lm: Any, res: Any) -> str:
    try:
        size = f" ({len(lm.encode(res.prompt))} tokens)"
    except Exception:  # noqa: BLE001 - the count is only a detail
        size = ""
    return (
        f"swamla-tui: warning: prompt {res.index + 1}{size} is longer than max_length "
        f"{lm.max_length}: only its last {lm.max_length} tokens were used"
    )


def run_headless(args: argparse.Namespace, loader: Loader) -> int:
    """Run every prompt and write the results; returns the exit status (0: all answered)."""
    from .cli import params_from_args

    err = sys.stderr
    output: str | None = getattr(args, "output", None) or None
    if output:
        _check_output(output)
    prompts = load_batch_prompts(getattr(args, "prompts_file", None))

    lm = loader(lambda text: print(f"… {text}", file=err, flush=True))
    for notice in getattr(lm, "notices", ()):
        print(f"note: {notice}", file=err)
    params = params_from_args(args)
    batch_size = getattr(args, "batch_size", None) or lm.default_batch_size()
    where = output or "stdout"
    print(
        f"… Running {len(prompts)} prompt{'s' if len(prompts) != 1 else ''} "
        f"in batches of {batch_size} → {where}",
        file=err,
        flush=True,
    )

    results: list[Any] = [None] * len(prompts)
    progress = Progress(len(prompts), err)
    stdout = None if output else _StdoutWriter(sys.stdout)
    cancel = threading.Event()
    interrupted = False
    try:
        for res in lm.generate_batch(prompts, params, batch_size=batch_size, cancel=cancel):
            results[res.index] = res
            if res.truncated:
                progress.note(_truncation_warning(lm, res))
            progress.advance(res.new_tokens)
            if stdout is not None:
                stdout.push(results)
    except KeyboardInterrupt:
        cancel.set()
        interrupted = True
    except BrokenPipeError:  # `... | head`: the reader is gone, stop quietly
        cancel.set()
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    progress.finish()

    finished = [r for r in results if r is not None]
    if output:
        write_results(finished, output)
    answered = sum(1 for r in finished if r.finish_reason in ANSWERED)
    if interrupted:
        print(
            f"swamla-tui: interrupted: {answered} of {len(prompts)} prompts answered"
            + (f", written to {output}" if output else ""),
            file=err,
        )
        return 130
    elapsed = time.perf_counter() - progress.t0
    print(
        f"… Done: {answered}/{len(prompts)} prompts in {elapsed:.1f} s"
        + (f", written to {output}" if output else ""),
        file=err,
    )
    return 0 if answered == len(prompts) else 1
