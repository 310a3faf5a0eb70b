"""Transcripts: each conversation's JSONL event log, and the folder that holds them.

Pure Python (no torch, no textual). A transcript is a header (format, version, creation
time, system prompt, model source) followed by events: turn, system, undo, clear, model
(``/model`` switched the chat's model: the listing and ``--resume`` reopen the last). Each
event is appended and fsynced as soon as it is finished, so a crash never loses a
finished turn; `TranscriptStore.replay` rebuilds the `Conversation` (for ``--resume``)
and skips lines it cannot use (a half-written last line, a crafted one), counting them.

One writer per file: a `Transcript` holds an exclusive, non-blocking ``flock`` on its file
from its first write (or from `TranscriptStore.reopen`) until `close` or the end of the
process, so two instances resuming the same conversation cannot interleave their turns
(one's ``/undo`` would drop the other's turn on replay). `reopen` raises
`TranscriptBusy` when another holds the lock; the session then continues in a new file
that starts with a copy of the conversation. The kernel drops the lock when a process
dies, so a crash leaves no stale lock. Where ``fcntl`` is missing (Windows) there is no
lock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ..base.errors import SwamlaError
from ..base.paths import data_dir, read_regular, special_kind
from .conversation import CONVERSATION_FORMAT, CONVERSATION_VERSION, Conversation, Turn

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

__all__ = ["Replay", "Transcript", "TranscriptBusy", "TranscriptStore"]


class TranscriptBusy(SwamlaError):
    """Another swamla-tui (or another `Transcript`) is writing this transcript."""


@dataclass(frozen=True)
class Replay:
    """A transcript read back: the conversation, and how many lines were skipped."""

    conversation: Conversation
    skipped: int
    """Lines that are not a usable event: a crash mid-write, or a damaged or crafted line."""
    header: dict[str, Any] = field(default_factory=dict)
    """The header line as written (creation time, system prompt, ``meta``)."""
    model: dict[str, Any] | None = None
    """The model the conversation last used: the header's ``meta["model"]``, replaced by
    each ``model`` event (`Transcript.record_model`); None when none was recorded."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


MAX_TRANSCRIPT_BYTES = 512 * 2**20
"""A transcript larger than this is not replayed (no conversation grows that big)."""


def _nonblocking(path: str, flags: int) -> int:
    """Open without waiting: a FIFO put there after the check fails instead of blocking."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable (POSIX only; harmless elsewhere)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Transcript:
    """One conversation's JSONL log. The file is created on the first event.

    Each event is one JSON line, flushed and fsynced before the method returns, so a
    crash never loses a finished turn (at worst a half-written last line, which `replay`
    skips). The file stays open, and locked, from the first write (`exists`: from the
    constructor, which raises `TranscriptBusy` when another writer holds it) to `close`.
    `seed` turns are written after the header (a resumed conversation's copy).
    """

    def __init__(
        self,
        path: Path,
        *,
        system: str | None = None,
        meta: dict[str, Any] | None = None,
        exists: bool = False,
        seed: Sequence[Turn] = (),
    ) -> None:
        self.path = Path(path)
        self._header: dict[str, Any] = {
            "type": "header",
            "format": CONVERSATION_FORMAT,
            "version": CONVERSATION_VERSION,
            "created": _now(),
            "system": system,
            "meta": dict(meta or {}),
        }
        self._seed = [self._turn_record(turn) for turn in seed]
        self._started = exists
        self._fh: TextIO | None = None
        if exists:
            self._open()

    @property
    def started(self) -> bool:
        """Whether the file exists yet (nothing is written before the first event)."""
        return self._started

    def _open(self) -> TextIO:
        """Open the file for appending and take its lock (once)."""
        if self._fh is not None:
            return self._fh
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kind = special_kind(self.path)
            if kind is not None:  # a FIFO would block the open until a reader comes
                raise SwamlaError(f"cannot write transcript {self.path}: it is {kind}")
            fh = open(self.path, "a", encoding="utf-8", opener=_nonblocking)  # noqa: SIM115 - held open: the lock
        except OSError as exc:
            raise SwamlaError(
                f"cannot write transcript {self.path}: {exc.strerror or exc}"
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                raise TranscriptBusy(f"{self.path.name} is open in another swamla-tui") from None
            except OSError:  # a file system without locks: write unlocked
                pass
        self._fh = fh
        return fh

    def close(self) -> None:
        """Release the file and its lock (idempotent; the next write opens it again)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()

    def _write(self, record: dict[str, Any]) -> None:
        lines = []
        new_file = not self._started
        if new_file:
            lines.append(self._header)
            lines.extend(self._seed)
        lines.append(record)
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines)
        fh = self._open()
        try:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        except OSError as exc:
            raise SwamlaError(
                f"cannot write transcript {self.path}: {exc.strerror or exc}"
            ) from None
        if new_file:
            _fsync_dir(self.path.parent)
        self._started = True
        self._seed = []

    @staticmethod
    def _turn_record(turn: Turn) -> dict[str, Any]:
        return {"type": "turn", "time": _now(), **asdict(turn)}

    def append_turn(self, turn: Turn) -> None:
        """Record a finished exchange."""
        self._write(self._turn_record(turn))

    def record_system(self, system: str | None) -> None:
        """Record a system-prompt change (None clears it)."""
        self._write({"type": "system", "time": _now(), "system": system})

    def record_undo(self) -> None:
        """Record ``/undo`` (the last turn is dropped on replay)."""
        self._write({"type": "undo", "time": _now()})

    def record_clear(self) -> None:
        """Record ``/clear`` (the turns so far are dropped on replay). The app starts a new
        transcript on ``/clear`` instead; older transcripts hold this event."""
        self._write({"type": "clear", "time": _now()})

    def record_model(self, model: dict[str, Any]) -> None:
        """Record a model switch (``/model``): `model` replaces the header's for
        ``--resume`` and the conversation list."""
        self._write({"type": "model", "time": _now(), "model": dict(model)})


class TranscriptStore:
    """The folder of transcripts: ``<data dir>/transcripts/*.jsonl``.

    `directory` overrides the folder (tests pass `tmp_path`); otherwise it is
    ``data_dir() / "transcripts"``, which honours ``$SWAMLA_TUI_DATA_DIR``. Nothing is
    created on disk until the first event is written.
    """

    SUFFIX = ".jsonl"

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else data_dir() / "transcripts"

    def new_path(self) -> Path:
        """A fresh, unused file name that sorts by creation time."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = self.directory / f"chat-{stamp}{self.SUFFIX}"
        n = 1
        while path.exists():
            path = self.directory / f"chat-{stamp}-{n}{self.SUFFIX}"
            n += 1
        return path

    def new(
        self,
        *,
        system: str | None = None,
        meta: dict[str, Any] | None = None,
        seed: Sequence[Turn] = (),
    ) -> Transcript:
        """Start a new conversation's transcript (`meta`: e.g. the model source; `seed`:
        turns it starts with, written with the header on the first event)."""
        return Transcript(self.new_path(), system=system, meta=meta, seed=seed)

    def reopen(self, path: str | os.PathLike[str]) -> Transcript:
        """Keep appending to an existing transcript (after ``--resume``); locks it now.

        Raises `TranscriptBusy` when another writer holds it, `SwamlaError` when it
        cannot be opened.
        """
        return Transcript(Path(path), exists=True)

    def paths(self) -> list[Path]:
        """Every transcript, most recently written first."""
        try:
            paths = [p for p in self.directory.glob(f"*{self.SUFFIX}") if p.is_file()]
        except OSError:
            return []

        def key(p: Path) -> tuple[float, str]:
            try:
                return (p.stat().st_mtime, p.name)
            except OSError:
                return (0.0, p.name)

        return sorted(paths, key=key, reverse=True)

    def latest(self) -> Path | None:
        """The most recently written transcript (for ``--resume``), or None."""
        found = self.paths()
        return found[0] if found else None

    @staticmethod
    def load(path: str | os.PathLike[str]) -> Conversation:
        """The conversation a transcript records (`replay` without the skipped count)."""
        return TranscriptStore.replay(path).conversation

    @staticmethod
    def replay(path: str | os.PathLike[str]) -> Replay:
        """Rebuild the conversation a transcript records.

        Lines that are not a usable event are skipped and counted: not JSON (a crash
        mid-write), nested too deep for the parser (RecursionError), not an object, or
        with fields of the wrong type. Raises `SwamlaError` when the file cannot be read
        or has no transcript header.
        """
        path = Path(path)
        kind = special_kind(path)
        if kind is not None:  # a FIFO would block the read, a device never ends
            raise SwamlaError(f"cannot read transcript {path}: it is {kind}")
        try:
            raw = read_regular(path, "transcript", limit=MAX_TRANSCRIPT_BYTES).decode(
                "utf-8", errors="replace"
            )
        except SwamlaError as exc:
            raise SwamlaError(f"cannot read transcript {exc}") from None
        records, skipped = _records(raw)
        if not records or records[0].get("type") != "header":
            raise SwamlaError(f"{path}: not a swamla-tui transcript")
        header = records[0]
        conv = Conversation()
        system = header.get("system")
        conv.set_system(system if isinstance(system, str) else None)
        skipped += sum(1 for rec in records[1:] if not _apply(conv, rec))
        return Replay(conv, skipped, header, _last_model(records))


def _last_model(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The header's ``meta["model"]``, replaced by each ``model`` event (dicts only)."""
    meta = records[0].get("meta")
    model = meta.get("model") if isinstance(meta, dict) else None
    for rec in records[1:]:
        if rec.get("type") == "model":
            model = rec.get("model")
    return model if isinstance(model, dict) else None


def _apply(conv: Conversation, rec: dict[str, Any]) -> bool:
    """Replay one event onto `conv`; False when it is not a usable event."""
    kind = rec.get("type")
    if kind == "turn":
        user, reply, stopped = rec.get("user"), rec.get("assistant"), rec.get("stopped", False)
        if not (isinstance(user, str) and isinstance(reply, str) and isinstance(stopped, bool)):
            return False
        conv.turns.append(Turn(user, reply, stopped))
    elif kind == "system":
        system = rec.get("system")
        if not (system is None or isinstance(system, str)):
            return False
        conv.set_system(system)
    elif kind == "undo":
        conv.undo()
    elif kind == "clear":
        conv.clear()
    elif kind == "model":
        return isinstance(rec.get("model"), dict)  # the conversation itself is unchanged
    else:
        return False
    return True


def _records(raw: str) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of `raw`, one per line, and the number of lines that are not one."""
    records: list[dict[str, Any]] = []
    skipped = 0
    # Only "\n" ends a record: str.splitlines() would also split at U+2028 and friends,
    # which json.dumps(ensure_ascii=False) leaves unescaped inside strings.
    for line in raw.split("\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: a crafted 100k-deep line
            skipped += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            skipped += 1
    return records, skipped
