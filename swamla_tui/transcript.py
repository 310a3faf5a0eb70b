"""Transcripts: each conversation's JSONL event log, and the folder that holds them.

Pure Python (no torch, no textual). A transcript is a header (format, version, creation
time, system prompt, model source) followed by events: turn, system, undo, clear. Each
event is appended and fsynced as soon as it is finished, so a crash never loses a
finished turn; `TranscriptStore.load` replays the events into a `Conversation` (for
``--resume``) and skips a half-written last line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .conversation import CONVERSATION_FORMAT, CONVERSATION_VERSION, Conversation, Turn
from .errors import SwamlaError
from .paths import data_dir

__all__ = ["Transcript", "TranscriptStore"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    crash never loses a finished turn (at worst a half-written last line, which `load`
    ignores).
    """

    def __init__(
        self,
        path: Path,
        *,
        system: str | None = None,
        meta: dict[str, Any] | None = None,
        exists: bool = False,
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
        self._started = exists

    @property
    def started(self) -> bool:
        """Whether the file exists yet (nothing is written before the first event)."""
        return self._started

    def _write(self, record: dict[str, Any]) -> None:
        lines = []
        new_file = not self._started
        if new_file:
            lines.append(self._header)
        lines.append(record)
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
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

    def append_turn(self, turn: Turn) -> None:
        """Record a finished exchange."""
        self._write({"type": "turn", "time": _now(), **asdict(turn)})

    def record_system(self, system: str | None) -> None:
        """Record a system-prompt change (None clears it)."""
        self._write({"type": "system", "time": _now(), "system": system})

    def record_undo(self) -> None:
        """Record ``/undo`` (the last turn is dropped on replay)."""
        self._write({"type": "undo", "time": _now()})

    def record_clear(self) -> None:
        """Record ``/clear`` (the turns so far are dropped on replay)."""
        self._write({"type": "clear", "time": _now()})


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

    def new(self, *, system: str | None = None, meta: dict[str, Any] | None = None) -> Transcript:
        """Start a new conversation's transcript (`meta`: e.g. the model source)."""
        return Transcript(self.new_path(), system=system, meta=meta)

    def reopen(self, path: str | os.PathLike[str]) -> Transcript:
        """Keep appending to an existing transcript (after ``--resume``)."""
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
        """Rebuild the conversation a transcript records.

        Lines that are not valid JSON (a crash mid-write) are skipped. Raises
        `SwamlaError` when the file cannot be read or has no transcript header.
        """
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SwamlaError(f"cannot read transcript {path}: {exc.strerror or exc}") from None
        records = list(_records(raw))
        if not records or records[0].get("type") != "header":
            raise SwamlaError(f"{path}: not a swamla-tui transcript")
        header = records[0]
        conv = Conversation()
        conv.set_system(_opt_str(header.get("system")))
        for rec in records[1:]:
            kind = rec.get("type")
            if kind == "turn":
                conv.turns.append(
                    Turn(
                        str(rec.get("user", "")),
                        str(rec.get("assistant", "")),
                        bool(rec.get("stopped", False)),
                    )
                )
            elif kind == "system":
                conv.set_system(_opt_str(rec.get("system")))
            elif kind == "undo":
                conv.undo()
            elif kind == "clear":
                conv.clear()
        return conv


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _records(raw: str) -> Iterator[dict[str, Any]]:
    # Only "\n" ends a record: str.splitlines() would also split at U+2028 and friends,
    # which json.dumps(ensure_ascii=False) leaves unescaped inside strings.
    for line in raw.split("\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield rec
