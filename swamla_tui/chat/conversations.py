"""The conversation list: past transcripts with their title, model and turns; find, rename,
delete. Pure Python (no torch, no textual): the list screen and ``--resume ID`` use it.

A conversation's id is its transcript's file stem (``chat-20261202-010203-123456``);
`Conversations.find` also takes a unique prefix of it, with or without ``chat-``, or the
path of a transcript file. Renames live in ``titles.json`` beside the transcripts (id ->
title), not in the transcript: a conversation open in another instance is locked by it,
and a rename must not wait for that instance to end. Without a rename the title is the
first user message.

The model a conversation was made with is the transcript header's ``meta["model"]``
(`ModelRef`), replaced by a later ``model`` event (``/model``); transcripts written
before it was recorded have only ``meta["source"]`` (the loaded checkpoint's label).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..base.errors import SwamlaError
from .transcript import Replay, TranscriptStore

__all__ = [
    "TITLE_MAX",
    "ConversationInfo",
    "Conversations",
    "ModelRef",
    "model_of",
    "one_line_title",
]

TITLE_FILE = "titles.json"
TITLE_MAX = 120
"""Longest title kept (a rename, or the first message shown as the title)."""


def one_line_title(text: str, limit: int = TITLE_MAX) -> str:
    """`text` on one line (blanks collapsed), cut to `limit` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class ModelRef:
    """The model a conversation was made with: what reopens it, and how it was shown."""

    source: str
    """What the user gave: a checkpoint file or folder, or a Hub repo id."""
    hf_checkpoint: str | None = None
    """``--hf_checkpoint``: the subfolder of a repo or folder, when one was given."""
    checkpoint: str | None = None
    """The loaded checkpoint's own label (the model card's source), for display."""

    @staticmethod
    def of(source: str, hf_checkpoint: str | None = None) -> ModelRef:
        """What the user gave, a local file or folder made absolute (a conversation is
        resumed from any folder); a Hub repo id as given."""
        try:
            path = Path(source).expanduser()
            if path.exists():
                source = str(path.resolve())
        except (OSError, RuntimeError, ValueError):
            pass
        return ModelRef(source, hf_checkpoint or None)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "hf_checkpoint": self.hf_checkpoint,
            "checkpoint": self.checkpoint,
        }

    @staticmethod
    def from_json(obj: object) -> ModelRef | None:
        """The reference a transcript recorded; None when it is missing or malformed."""
        if not isinstance(obj, dict):
            return None
        source, sub, label = obj.get("source"), obj.get("hf_checkpoint"), obj.get("checkpoint")
        if not isinstance(source, str) or not source:
            return None
        return ModelRef(
            source,
            sub if isinstance(sub, str) and sub else None,
            label if isinstance(label, str) and label else None,
        )

    def same_model(self, other: ModelRef) -> bool:
        """The same checkpoint asked for (the display label does not count)."""
        return (self.source, self.hf_checkpoint) == (other.source, other.hf_checkpoint)

    @property
    def name(self) -> str:
        """A short name for lists: the file or folder name (with the subfolder)."""
        name = Path(self.source.rstrip("/\\")).name or self.source
        return f"{name}/{self.hf_checkpoint}" if self.hf_checkpoint else name

    def describe(self) -> str:
        """For notices: ``source`` or ``source (--hf_checkpoint sub)``."""
        if self.hf_checkpoint:
            return f"{self.source} (--hf_checkpoint {self.hf_checkpoint})"
        return self.source


def model_of(replay: Replay) -> ModelRef | None:
    """The model a replayed transcript last used (older transcripts: the header's source)."""
    ref = ModelRef.from_json(replay.model)
    if ref is not None:
        return ref
    meta = replay.header.get("meta")
    source = meta.get("source") if isinstance(meta, dict) else None
    return ModelRef(source) if isinstance(source, str) and source else None


@dataclass(frozen=True)
class ConversationInfo:
    """One row of the conversation list."""

    id: str
    path: Path
    created: str
    """The header's creation time (ISO 8601, UTC), "" when missing."""
    updated: datetime
    """When the transcript was last written (its modification time, local)."""
    title: str
    renamed: bool
    """Whether `title` is a rename (else the first user message, or "(no messages)")."""
    model: ModelRef | None
    turns: int
    skipped: int
    """Lines of the transcript that could not be read."""


class Conversations:
    """The conversations of a `TranscriptStore`: list, find, rename, delete."""

    def __init__(self, store: TranscriptStore) -> None:
        self.store = store

    @property
    def titles_path(self) -> Path:
        return self.store.directory / TITLE_FILE

    # -- reading ---------------------------------------------------------------------

    def list(self) -> list[ConversationInfo]:
        """Every readable conversation, most recently written first (an unreadable
        transcript is left out: it is not one, or cannot be read)."""
        titles = self._titles()
        found = []
        for path in self.store.paths():
            try:
                found.append(self._info(path, titles))
            except SwamlaError:
                continue
        return found

    def info(self, path: str | os.PathLike[str]) -> ConversationInfo:
        """One conversation's row; raises `SwamlaError` when it cannot be read."""
        return self._info(Path(path), self._titles())

    def _info(self, path: Path, titles: dict[str, str]) -> ConversationInfo:
        replay = TranscriptStore.replay(path)
        turns = replay.conversation.turns
        renamed = titles.get(path.stem)
        if renamed:
            title = renamed
        elif turns:
            title = one_line_title(turns[0].user)
        else:
            title = "(no messages)"
        try:
            updated = datetime.fromtimestamp(path.stat().st_mtime)
        except OSError:
            updated = datetime.fromtimestamp(0)
        created = replay.header.get("created")
        return ConversationInfo(
            id=path.stem,
            path=path,
            created=created if isinstance(created, str) else "",
            updated=updated,
            title=title,
            renamed=bool(renamed),
            model=model_of(replay),
            turns=len(turns),
            skipped=replay.skipped,
        )

    def find(self, ident: str) -> Path:
        """The transcript `ident` names: an id, a unique prefix of one (``chat-`` may be
        left out), or a transcript file's path. Raises `SwamlaError` (one line) when it
        names none or several."""
        ident = ident.strip()
        if not ident:
            raise SwamlaError("give a conversation id (the conversation list shows them)")
        given = Path(ident).expanduser()
        if ident.endswith(TranscriptStore.SUFFIX) and given.is_file():
            return given
        paths = self.store.paths()
        exact = [p for p in paths if p.stem == ident]
        if exact:
            return exact[0]
        matches = [
            p for p in paths if p.stem.startswith(ident) or p.stem.startswith(f"chat-{ident}")
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SwamlaError(
                f"no conversation {ident!r} in {self.store.directory} "
                "(Ctrl+O in the app lists them)"
            )
        names = ", ".join(p.stem for p in matches[:3]) + (", …" if len(matches) > 3 else "")
        raise SwamlaError(f"{ident!r} matches {len(matches)} conversations: {names}")

    # -- changing --------------------------------------------------------------------

    def rename(self, path: str | os.PathLike[str], title: str) -> str:
        """Give a conversation a title (one line, at most `TITLE_MAX` characters); a blank
        title removes the rename. Returns the title kept. Raises `SwamlaError` when the
        titles file cannot be written."""
        stem = Path(path).stem
        kept = one_line_title(title)
        titles = self._titles()
        if kept:
            titles[stem] = kept
        else:
            titles.pop(stem, None)
        self._write_titles(titles)
        return kept

    def delete(self, path: str | os.PathLike[str]) -> None:
        """Delete a conversation's transcript (and its rename). Refused (`TranscriptBusy`)
        while another instance has it open; `SwamlaError` when it cannot be removed."""
        path = Path(path)
        transcript = self.store.reopen(path)  # the lock: nobody is writing it
        try:
            path.unlink()
        except OSError as exc:
            raise SwamlaError(f"cannot delete {path}: {exc.strerror or exc}") from None
        finally:
            transcript.close()
        titles = self._titles()
        if titles.pop(path.stem, None) is not None:
            with contextlib.suppress(SwamlaError):  # a stale title is never shown
                self._write_titles(titles)

    # -- the titles file -------------------------------------------------------------

    def _titles(self) -> dict[str, str]:
        try:
            loaded = json.loads(self.titles_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        if not isinstance(loaded, dict):
            return {}
        return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, str)}

    def _write_titles(self, titles: dict[str, str]) -> None:
        path = self.titles_path
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(titles, ensure_ascii=False, indent=1), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            raise SwamlaError(f"cannot write {path}: {exc.strerror or exc}") from None
