"""Chat state, its prompt (in the conversation's `ChatFormat`), history trimming, ``/save``.

Pure Python (no torch, no textual). The default prompt format (formats v1 §7) is kept byte for
byte because checkpoints fine-tuned on the original script's chats expect it (ChatML, for
instruction-tuned checkpoints, is described in `swamla_tui.chat.template`)::

    <system prompt>\\n\\n            (only when a system prompt is set)
    You: <text>\\n
    Assistant: <reply>\\n
    ...
    You: <new message>\\n
    Assistant:                     (generation starts here)

Decisions (the UI relies on them):

* `cut_reply` (and `ChatFormat.cut_reply`) cuts the generated text at the first stop
  string (``"\\nYou:"``; ChatML: ``<|im_end|>``) and strips surrounding whitespace: the model's first token after ``"Assistant:"`` is normally a space, and the
  history line adds exactly one space back (``"Assistant: " + reply``).
* User messages are stripped too, so the prompt never holds ``"You:  hi  \\n"``.
* Trimming (`Conversation.fit`) never deletes turns: it moves `context_start` forward so
  that old turns stay visible, exported and saved, but are no longer sent to the model.
  It only ever moves forward (until `clear`), so the "N turns dropped" notice is shown
  once per drop, not before every message.
* ``/clear`` (`Conversation.clear`) keeps the system prompt: it is a setting, not history.
* Transcripts (the on-disk event log of a conversation) live in `swamla_tui.chat.transcript`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..base.errors import SwamlaError
from ..base.paths import data_dir
from .template import PLAIN, ChatFormat

__all__ = [
    "ASSISTANT_CUE",
    "ASSISTANT_PREFIX",
    "CONVERSATION_FORMAT",
    "CONVERSATION_VERSION",
    "STOP_STRINGS",
    "SYSTEM_SEPARATOR",
    "USER_PREFIX",
    "Conversation",
    "Turn",
    "cut_reply",
    "save_conversation",
]

SYSTEM_SEPARATOR = "\n\n"
USER_PREFIX = "You: "
ASSISTANT_PREFIX = "Assistant: "
ASSISTANT_CUE = "Assistant:"
STOP_STRINGS: tuple[str, ...] = PLAIN.stop
"""The plain format's stop strings: the model starts the user's next line."""

CONVERSATION_VERSION = 1
CONVERSATION_FORMAT = "swamla-tui conversation"
"""The ``format`` field of ``/save x.json`` files and of transcript headers."""


def cut_reply(generated: str) -> str:
    """The reply to keep from text generated after ``"Assistant:"``.

    Cut at the first ``"\\nYou:"`` (the model began the user's next line) and strip the
    surrounding whitespace, as the original script did.
    """
    return PLAIN.cut_reply(generated)


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
    chat_format: ChatFormat = PLAIN
    """How the prompt is written (not saved: it belongs to the model, not the chat)."""

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
        """System prompt and the in-context turns, in the conversation's format."""
        fmt = self.chat_format
        parts = [fmt.system_text(self.system)]
        parts += [fmt.turn_text(turn.user, turn.assistant) for turn in self.context_turns]
        return "".join(parts)

    def prompt_for(self, user_msg: str) -> str:
        """The text to generate from when the user sends `user_msg`."""
        return self.history_text() + self.chat_format.cue_text(user_msg.strip())

    def copy(self) -> Conversation:
        """An independent copy (a worker thread may trim it while the UI keeps the original)."""
        return Conversation(self.system, list(self.turns), self.context_start, self.chat_format)

    # -- editing -------------------------------------------------------------------
    def add_turn(self, user: str, assistant: str, stopped: bool = False) -> Turn:
        """Record a finished exchange; the reply is cut by the format's `cut_reply`."""
        turn = Turn(user.strip(), self.chat_format.cut_reply(assistant), stopped)
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

        `max_tokens` should leave room for the reply (`swamla_tui.chat.session.reply_reserve`).
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
            "format": CONVERSATION_FORMAT,
            "version": CONVERSATION_VERSION,
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


_EXPORT_FORMATS = {".md": "md", ".markdown": "md", ".json": "json"}


def save_conversation(
    conversation: Conversation,
    path: str | os.PathLike[str] | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``/save [path]``: Markdown or JSON chosen by the extension.

    Without `path` the file goes to `directory` (default ``data_dir() / "exports"``) as
    ``conversation-<time>.md``. ``~`` is expanded. Returns the path written; raises
    `SwamlaError` for an unknown extension, a write failure, or an existing file unless
    `overwrite` (``/save! path``): a typo must not replace a file silently. An existing
    folder as `path` gets the default name inside it (``/save ~/notes``).
    """
    if path is not None and str(path).strip():
        given = Path(str(path).strip()).expanduser()
        if given.is_dir():
            path, directory = None, given
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
        # "x" creates the file or fails: no window between a check and the write
        with open(target, "w" if overwrite else "x", encoding="utf-8") as fh:
            fh.write(text)
    except FileExistsError:
        name = _one_line(str(target))
        if target.is_dir():
            raise SwamlaError(f"{name} is a folder: give a file name (.md or .json)") from None
        raise SwamlaError(f"{name} already exists: /save! {name} overwrites it") from None
    except OSError as exc:
        raise SwamlaError(f"cannot write {_one_line(str(target))}: {exc.strerror or exc}") from None
    return target


def _one_line(text: str) -> str:
    return re.sub(r"\s", " ", text)
