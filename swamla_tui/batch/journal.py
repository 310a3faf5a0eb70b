"""Crash-safe, resumable batch output: a JSONL journal of finished rows (pure Python).

A headless run appends each finished row to its journal at once (one JSON line, flushed;
fsync at most every `SYNC_EVERY` seconds and when the run ends), so a killed run (even
``kill -9``) loses only the rows in flight. With ``--output out.jsonl`` the journal *is*
the output; with ``--output out.csv`` / ``.md`` it is ``out.csv.partial.jsonl`` beside
it, and the CSV/Markdown file is written from the same results when the run ends.

A rerun with the same prompts and output reads the journal back (`open_journal`): rows
whose ``index`` and ``prompt`` match the prompts are done and skipped. A torn last line
(the process died inside a write) is cut off; any other line that is not a result of
these prompts is refused with a one-line error that names ``--overwrite``, so results of
another prompts file are never mixed in silently. Rows are journalled in the order they
finish, each with its ``index``; once every prompt has its result the JSONL output is
rewritten in input order (`finish`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..base.errors import SwamlaError
from ..base.jsonl import read_journal_lines
from .results import format_for, render_results, write_atomically

__all__ = ["SYNC_EVERY", "Journal", "finish", "journal_path", "open_journal", "read_journal"]

SYNC_EVERY = 2.0
"""Seconds between fsyncs of the journal (a flush follows every row)."""

JOURNAL_SUFFIX = ".partial.jsonl"


def journal_path(output: str | os.PathLike[str]) -> Path:
    """Where the rows of a run writing `output` are journalled."""
    path = Path(output)
    if format_for(path) == "jsonl":
        return path
    return path.with_name(path.name + JOURNAL_SUFFIX)


def _refuse(path: Path, line: int, what: str) -> SwamlaError:
    return SwamlaError(
        f"{path}: line {line} {what}; it holds results of another run "
        "(use --overwrite to start over, or another --output)"
    )


def read_journal(path: Path, prompts: Sequence[str]) -> tuple[dict[int, dict[str, Any]], int]:
    """The finished rows recorded in `path` (by index) and the byte length of its valid part.

    The valid part ends after the last complete line: a last line without its newline is
    a torn write and is not part of it. Rows that failed (``finish_reason`` "error") are
    done too: rerunning them gives the same failure. Raises `SwamlaError` (one line) for a
    line that is not a finished row of `prompts`.
    """
    records, valid = read_journal_lines(path)
    done: dict[int, dict[str, Any]] = {}
    for number, rec in records:
        if not isinstance(rec, dict):  # NOT_JSON too
            raise _refuse(path, number, "is not a JSON result")
        index = rec.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise _refuse(path, number, "has no row index")
        if not 0 <= index < len(prompts) or rec.get("prompt") != prompts[index]:
            raise _refuse(path, number, f"(row {index + 1}) is not a prompt of this prompts file")
        if rec.get("finish_reason") not in ("length", "stop", "eos", "error"):
            continue  # not a final result (never written by this module): run it again
        done[index] = rec
    return done, valid


@dataclass
class Journal:
    """The append side: one JSON line per finished row, flushed at once, synced often."""

    path: Path
    fh: IO[str]
    clock: Callable[[], float] = time.monotonic
    sync_every: float = SYNC_EVERY
    _last_sync: float = field(default=0.0, init=False)
    _dirty: bool = field(default=False, init=False)

    def append(self, record: Mapping[str, Any]) -> None:
        """Write `record` as one line, in one write call (a crash tears at most this line)."""
        try:
            self.fh.write(json.dumps(dict(record), ensure_ascii=False) + "\n")
            self.fh.flush()
            self._dirty = True
            if self.clock() - self._last_sync >= self.sync_every:
                self.sync()
        except OSError as exc:  # a full disk, a removed folder: one line, rows so far kept
            raise SwamlaError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def sync(self) -> None:
        if self._dirty:
            os.fsync(self.fh.fileno())
            self._dirty = False
        self._last_sync = self.clock()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.flush()
            self.sync()
            self.fh.close()


def open_journal(
    output: str | os.PathLike[str], prompts: Sequence[str], *, overwrite: bool
) -> tuple[Journal, dict[int, dict[str, Any]]]:
    """Open the journal of a run writing `output`; the rows an earlier run finished.

    `overwrite` starts over (the journal is emptied). Otherwise a torn last line is cut
    off before appending, so the file stays valid JSONL.
    """
    path = journal_path(output)
    done: dict[int, dict[str, Any]] = {}
    valid = 0
    if not overwrite:
        done, valid = read_journal(path, prompts)
    try:
        fh = open(path, "r+" if valid else "w", encoding="utf-8", newline="")  # noqa: SIM115
        if valid:
            fh.seek(valid)
            fh.truncate()  # repair a torn last line
    except OSError as exc:
        raise SwamlaError(f"cannot write {path}: {exc.strerror or exc}") from None
    return Journal(path, fh), done


def finish(
    journal: Journal, output: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]
) -> None:
    """The run is over: close the journal and write `output` from `records` (all rows).

    JSONL: the journal is replaced by the records in input order. CSV/Markdown: the file
    is written and the journal removed.
    """
    journal.close()
    target = Path(output)
    try:
        write_atomically(target, render_results(records, format_for(target)))
        if journal.path != target:
            journal.path.unlink(missing_ok=True)
    except OSError as exc:
        raise SwamlaError(f"cannot write {target}: {exc.strerror or exc}") from None
