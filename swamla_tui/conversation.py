"""Chat state in the original script's prompt format, history trimming and transcripts.

Pure Python (no torch, no textual). The prompt format (spec §7) is kept byte for byte
because checkpoints fine-tuned on the original script's chats expect it::

    <system prompt>\\n\\n            (only when a system prompt is set)
    You: <text>\\n
    Assistant: <reply>\\n
    ...
    You: <new message>\\n
    Assistant:                     (generation starts here)

Decisions (the UI relies on them):

* `cut_reply` cuts the generated text at the first ``"\\nYou:"`` and strips surrounding
  whitespace: the model's first token after ``"Assistant:"`` is normally a space, and the
  history line adds exactly one space back (``"Assistant: " + reply``).
* User messages are stripped too, so the prompt never holds ``"You:  hi  \\n"``.
* Trimming (`Conversation.fit`) never deletes turns: it moves `context_start` forward so
  that old turns stay visible, exported and saved, but are no longer sent to the model.
  It only ever moves forward (until `clear`), so the "N turns dropped" notice is shown
  once per drop, not before every message.
* ``/clear`` (`Conversation.clear`) keeps the system prompt: it is a setting, not history.
* Transcripts are JSONL event logs (header, turn, system, undo, clear), appended and
  fsynced one finished event at a time; `TranscriptStore.load` replays them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import SwamlaError

__all__ = [
    "ASSISTANT_CUE",
    "ASSISTANT_PREFIX",
    "DATA_DIR_ENV",
    "STOP_STRINGS",
    "SYSTEM_SEPARATOR",
    "USER_PREFIX",
    "Conversation",
    "Transcript",
    "TranscriptStore",
    "Turn",
    "cut_reply",
    "data_dir",
    "save_conversation",
]

SYSTEM_SEPARATOR = "\n\n"
USER_PREFIX = "You: "
ASSISTANT_PREFIX = "Assistant: "
ASSISTANT_CUE = "Assistant:"
STOP_STRINGS: tuple[str, ...] = ("\nYou:",)
"""Pass these as ``stop=`` to the engine: the model starts the user's next line."""

DATA_DIR_ENV = "SWAMLA_TUI_DATA_DIR"
APP_NAME = "swamla-tui"
TRANSCRIPT_VERSION = 1
_JSON_FORMAT = "swamla-tui conversation"


def cut_reply(generated: str) -> str:
    """The reply to keep from text generated after ``"Assistant:"``.

    Cut at the first ``"\\nYou:"`` (the model began the user's next line) and strip the
    surrounding whitespace, as the original script did.
    """
    for stop in STOP_STRINGS:
        index = generated.find(stop)
        if index >= 0:
            generated = generated[:index]
    return generated.strip()


def data_dir() -> Path:
    """Where swamla-tui keeps its files: ``$SWAMLA_TUI_DATA_DIR`` or the platform's."""
    override = os.environ.get(DATA_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass
class Turn:
    """One exchange. `stopped` is True when the user interrupted the reply."""

    user: str
    assistant: str
    stopped: bool = False


@dataclass
class Conversation:
    """The chat so far, and the prompt it turns into.

    `turns` holds every exchange (for display and export); only ``turns[context_start:]``
    is sent to the model, see `fit`.
    """

    system: str | None = None
    turns: list[Turn] = field(default_factory=list)
    context_start: int = 0

    # -- prompt format -------------------------------------------------------------
    def set_system(self, text: str | None) -> None:
        """Set (or clear with None / blank) the system prompt."""
        text = text.strip() if text is not None else None
        self.system = text or None

    @property
    def context_turns(self) -> list[Turn]:
        """The turns the model still sees."""
        return self.turns[self.context_start :]

    def history_text(self) -> str:
        """System prompt and the in-context turns, in the original script's format."""
        parts: list[str] = []
        if self.system:
            parts.append(self.system + SYSTEM_SEPARATOR)
        for turn in self.context_turns:
            parts.append(f"{USER_PREFIX}{turn.user}\n{ASSISTANT_PREFIX}{turn.assistant}\n")
        return "".join(parts)

    def prompt_for(self, user_msg: str) -> str:
        """The text to generate from when the user sends `user_msg`."""
        return f"{self.history_text()}{USER_PREFIX}{user_msg.strip()}\n{ASSISTANT_CUE}"

    # -- editing -------------------------------------------------------------------
    def add_turn(self, user: str, assistant: str, stopped: bool = False) -> Turn:
        """Record a finished exchange; the reply goes through `cut_reply`."""
        turn = Turn(user.strip(), cut_reply(assistant), stopped)
        self.turns.append(turn)
        return turn

    def undo(self) -> Turn | None:
        """Drop the last exchange and return it (None when there is nothing to undo)."""
        if not self.turns:
            return None
        turn = self.turns.pop()
        self.context_start = min(self.context_start, len(self.turns))
        return turn

    def last_user(self) -> str | None:
        """The last message the user sent (what ``/retry`` sends again), or None."""
        return self.turns[-1].user if self.turns else None

    def clear(self) -> None:
        """Forget every turn; the system prompt stays."""
        self.turns.clear()
        self.context_start = 0

    # -- trimming ------------------------------------------------------------------
    def fit(
        self,
        count_tokens: Callable[[str], int],
        max_tokens: int,
        user_msg: str | None = None,
    ) -> int:
        """Drop the oldest turns from the context until the prompt has <= `max_tokens`.

        `max_tokens` should leave room for the reply (context length minus max new tokens).
        The prompt measured is `prompt_for(user_msg)`, or `history_text()` when `user_msg`
        is None. The system prompt and the new message are never dropped, so the prompt
        may still be too long after every turn went (the engine then truncates it).
        Returns how many turns were dropped by this call, for the UI's notice.
        """

        def text() -> str:
            return self.history_text() if user_msg is None else self.prompt_for(user_msg)

        dropped = 0
        while self.context_start < len(self.turns) and count_tokens(text()) > max_tokens:
            self.context_start += 1
            dropped += 1
        return dropped

    # -- export --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole conversation (trimmed turns included)."""
        return {
            "format": _JSON_FORMAT,
            "version": TRANSCRIPT_VERSION,
            "system": self.system,
            "context_start": self.context_start,
            "turns": [asdict(turn) for turn in self.turns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        """Inverse of `to_dict`; raises `SwamlaError` on a malformed document."""
        try:
            turns = [
                Turn(str(t["user"]), str(t["assistant"]), bool(t.get("stopped", False)))
                for t in data["turns"]
            ]
            system = data.get("system")
            start = int(data.get("context_start", 0))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SwamlaError(f"not a swamla-tui conversation ({exc!s})") from None
        conv = cls(str(system) if system else None, turns)
        conv.context_start = max(0, min(start, len(turns)))
        return conv

    def to_json(self) -> str:
        """The conversation as an indented JSON document (for ``/save x.json``)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"

    def to_markdown(self, title: str = "Conversation") -> str:
        """The conversation as Markdown (for ``/save x.md``)."""
        lines = [f"# {title}", ""]
        if self.system:
            lines += ["**System:**", "", _md_block(self.system), ""]
        for turn in self.turns:
            lines += ["**You:**", "", _md_block(turn.user), ""]
            reply = _md_block(turn.assistant) if turn.assistant else "*(no reply)*"
            if turn.stopped:
                reply += " *(stopped)*"
            lines += ["**Assistant:**", "", reply, ""]
        return "\n".join(lines).rstrip("\n") + "\n"


def _md_block(text: str) -> str:
    """Text as a Markdown paragraph that keeps its line breaks."""
    lines = text.splitlines() or [""]
    return "  \n".join(line.rstrip() for line in lines)


# -- transcripts ------------------------------------------------------------------------


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
            "format": _JSON_FORMAT,
            "version": TRANSCRIPT_VERSION,
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


_EXPORT_FORMATS = {".md": "md", ".markdown": "md", ".json": "json"}


def save_conversation(
    conversation: Conversation,
    path: str | os.PathLike[str] | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``/save [path]``: Markdown or JSON chosen by the extension.

    Without `path` the file goes to `directory` (default ``data_dir() / "exports"``) as
    ``conversation-<time>.md``. ``~`` is expanded. Returns the path written; raises
    `SwamlaError` for an unknown extension or a write failure.
    """
    if path is None or not str(path).strip():
        folder = Path(directory) if directory is not None else data_dir() / "exports"
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        target = folder / f"conversation-{stamp}.md"
        n = 1
        while target.exists():
            target = folder / f"conversation-{stamp}-{n}.md"
            n += 1
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SwamlaError(f"cannot create {folder}: {exc.strerror or exc}") from None
    else:
        target = Path(str(path).strip()).expanduser()
    fmt = _EXPORT_FORMATS.get(target.suffix.lower())
    if fmt is None:
        what = f"unknown format {target.suffix!r}" if target.suffix else "no file extension"
        raise SwamlaError(f"{_one_line(str(target))}: {what} (use .md or .json)")
    text = conversation.to_markdown() if fmt == "md" else conversation.to_json()
    try:
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise SwamlaError(f"cannot write {_one_line(str(target))}: {exc.strerror or exc}") from None
    return target


def _one_line(text: str) -> str:
    return re.sub(r"\s", " ", text)
