"""The chat session without a screen: conversation, transcript, history fitting, resume.

Pure Python (no torch, no textual). The app renders and dispatches; this module decides
what the model sees and what is written to disk. Threading contract (the app relies on
it): every method of `ChatSession` runs on the UI thread; `plan_turn` is a function of a
`Conversation` *copy* (`ChatSession.snapshot`) so a worker thread can tokenize and trim
without touching the session, and the UI applies the result with `ChatSession.trim_to`.

History rule (what the model sees; README "Chat history"): before each message a part of
the window is reserved for the reply, `reply_reserve` = min(max_new_tokens,
max(max_length // 4, min(64, max_length // 2))) tokens; the system prompt, the new
message and as many whole past turns (newest first) as fit in the rest are sent. A reply
that grows past the reserve is not cut: when it reaches the end of the window the engine
slides the window (it keeps the most recent three quarters and re-encodes them) as it
does for any long generation. With the defaults (max_new_tokens 256) a 256-token model keeps 192 tokens of
history and a 2048-token one 1,792, instead of none when max_new_tokens equals the window.

Transcript writes that fail do not undo the change they record: the session reports the
one-line error through `report` and goes on (a full disk must not eat a reply).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import SwamlaError
from .conversation import Conversation, Turn, save_conversation
from .template import ChatFormat
from .transcript import Transcript, TranscriptBusy, TranscriptStore

__all__ = [
    "ChatSession",
    "ContextUsage",
    "Resumed",
    "TurnPlan",
    "context_usage",
    "count_noun",
    "dropped_notice",
    "plan_turn",
    "reply_reserve",
    "truncated_notice",
]


def count_noun(n: int, noun: str) -> str:
    """``"1 turn"``, ``"2 turns"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def dropped_notice(n: int) -> str:
    """The notice shown when turns left the context: `n` is how many are out in all (the
    status bar's "N turns out"), not only those this message pushed out."""
    what = (
        "the oldest turn no longer reaches" if n == 1 else f"the oldest {n} turns no longer reach"
    )
    return f"The conversation outgrew the context: {what} the model."


def truncated_notice(prompt_tokens: int, kept: int) -> str:
    """The notice shown when the prompt alone (every turn already out) exceeds the window:
    the engine keeps its last `kept` tokens."""
    return (
        f"The message is longer than the context ({prompt_tokens:,} tokens): it was "
        f"truncated to its last {kept:,} tokens."
    )


def reply_reserve(max_length: int, max_new_tokens: int) -> int:
    """Tokens of the window kept free for the reply (see the module docstring)."""
    window = max(1, int(max_length))
    floor = max(window // 4, min(64, window // 2))
    return max(1, min(int(max_new_tokens), floor))


@dataclass(frozen=True)
class Resumed:
    """What ``--resume`` found (the app turns it into notices)."""

    path: Path
    """The transcript the conversation was read from."""
    skipped: int
    """Lines of it that could not be used (damaged, crafted, a crash mid-write)."""
    busy: bool
    """Another instance holds it: this one writes to a new transcript (`ChatSession.
    transcript`), which starts with a copy of the conversation."""


@dataclass(frozen=True)
class TurnPlan:
    """What to send for one user message: the prompt, and how far the context moved."""

    user: str
    prompt: str
    context_start: int
    """Turns out of the context in all (this message's and earlier ones')."""
    dropped: int
    """Turns this message pushed out."""
    prompt_tokens: int = 0
    truncated_to: int | None = None
    """The prompt's last tokens the engine keeps when it is longer than `max_length`."""


def plan_turn(
    conversation: Conversation,
    user_text: str,
    count_tokens: Callable[[str], int],
    *,
    max_length: int,
    max_new_tokens: int,
) -> TurnPlan:
    """Fit `conversation` (a copy: it is trimmed in place) and build the prompt.

    The prompt leaves `reply_reserve` tokens of `max_length` free; the oldest turns
    leave the context first (see `Conversation.fit`). Runs in a worker: `count_tokens`
    is the tokenizer.
    """
    budget = max(1, int(max_length) - reply_reserve(max_length, max_new_tokens))
    dropped = conversation.fit(count_tokens, budget, user_text)
    prompt = conversation.prompt_for(user_text)
    n = count_tokens(prompt)
    return TurnPlan(
        user=user_text.strip(),
        prompt=prompt,
        context_start=conversation.context_start,
        dropped=dropped,
        prompt_tokens=n,
        truncated_to=int(max_length) if n > int(max_length) else None,
    )


@dataclass(frozen=True)
class ContextUsage:
    """What the next message would carry: history tokens, and turns left out of it."""

    tokens: int
    turns_out: int


def context_usage(
    conversation: Conversation,
    count_tokens: Callable[[str], int],
    *,
    max_length: int,
    max_new_tokens: int,
) -> ContextUsage:
    """The context gauge: the history as the next message would send it (fitted on a
    copy by the same rule as `plan_turn`), so the gauge shows what the model sees."""
    conv = conversation.copy()
    plan_turn(conv, "", count_tokens, max_length=max_length, max_new_tokens=max_new_tokens)
    return ContextUsage(count_tokens(conv.history_text()), conv.context_start)


class ChatSession:
    """The conversation the chat screen shows and the transcript that records it."""

    def __init__(
        self,
        store: TranscriptStore,
        *,
        system: str | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.conversation = Conversation()
        self.conversation.set_system(system)
        self._system_given = system is not None
        self.transcript: Transcript | None = None
        self.source: str | None = None
        """The loaded checkpoint's label, written into a new transcript's header."""
        self.model: dict[str, Any] | None = None
        """What reopens the model (`swamla_tui.chat.conversations.ModelRef` as JSON),
        written into a new transcript's header and recorded when ``/model`` switches."""
        self._recorded: dict[str, Any] | None = None
        """The model the open transcript records last (so a switch is written once)."""
        self.report: Callable[[str], None] = report or (lambda message: None)

    # -- transcript ----------------------------------------------------------------------

    def _record(self, action: Callable[[Transcript], None], *, create: bool = False) -> None:
        """Write one transcript event; the file is created by the first turn."""
        if self.transcript is None:
            if not create:
                return
            self.transcript = self.store.new(system=self.conversation.system, meta=self._meta())
        try:
            action(self.transcript)
        except SwamlaError as exc:
            self.report(str(exc))

    def _meta(self, **extra: object) -> dict[str, Any]:
        meta: dict[str, Any] = {"source": self.source, **extra}
        if self.model is not None:
            meta["model"] = self.model
        return meta

    def resume_latest(self) -> Resumed | None:
        """Reopen the most recent transcript (``--resume``); None when there is none."""
        path = self.store.latest()
        return None if path is None else self.resume(path)

    def resume(self, path: Path) -> Resumed:
        """Reopen the transcript at `path` (``--resume ID``, the conversation list).

        The transcript is locked before it is read; when another instance holds it, the
        conversation is read anyway and continues in a new transcript that starts with
        a copy of it (two writers would interleave turns). A system prompt given on the
        command line wins over the resumed one (and the change is recorded). Raises
        `SwamlaError` when the transcript cannot be read.
        """
        try:
            transcript: Transcript | None = self.store.reopen(path)
        except TranscriptBusy:
            transcript = None
        try:
            replay = TranscriptStore.replay(path)
        except SwamlaError:
            if transcript is not None:
                transcript.close()
            raise
        conversation = replay.conversation
        if transcript is None:
            transcript = self.store.new(
                system=conversation.system,
                meta=self._meta(resumed_from=path.name),
                seed=list(conversation.turns),
            )
        self.close()
        self.transcript = transcript
        self._recorded = replay.model if transcript.path == path else self.model
        system = self.conversation.system
        self.conversation = conversation
        if self._system_given and system != conversation.system:
            conversation.set_system(system)
            self._record(lambda t: t.record_system(conversation.system))
        return Resumed(path, replay.skipped, busy=transcript.path != path)

    def close(self) -> None:
        """Release the transcript (its lock) when the app ends; a later event reopens it."""
        if self.transcript is not None:
            self.transcript.close()

    def set_format(self, chat_format: ChatFormat) -> None:
        """Use the model's conversation format; a ChatML model gets its default system
        prompt unless one was given (``--system_prompt``) or the chat already has one."""
        conv = self.conversation
        conv.chat_format = chat_format
        if not self._system_given and conv.system is None and not conv.turns:
            conv.set_system(chat_format.default_system)

    # -- turns ---------------------------------------------------------------------------

    def snapshot(self) -> Conversation:
        """A copy for `plan_turn` in a worker thread."""
        return self.conversation.copy()

    def trim_to(self, context_start: int) -> None:
        """Apply a plan's trimming; the context only ever moves forward."""
        conv = self.conversation
        conv.context_start = max(conv.context_start, min(context_start, len(conv.turns)))

    def finish_turn(self, user: str, raw_reply: str, *, stopped: bool) -> Turn:
        """Record a finished exchange (the reply is cut as `cut_reply` does)."""
        turn = self.conversation.add_turn(user, raw_reply, stopped)
        self._record(lambda t: t.append_turn(turn), create=True)
        return turn

    def undo(self) -> Turn | None:
        """Drop the last exchange; None when there is none."""
        turn = self.conversation.undo()
        if turn is not None:
            self._record(lambda t: t.record_undo())
        return turn

    def clear(self) -> None:
        """Start a new conversation (the system prompt stays): the next turn starts a new
        transcript, so the one so far stays whole in the conversation list."""
        self.conversation.clear()
        self.close()
        self.transcript = None

    def switch_model(self, source: str | None, model: dict[str, Any] | None) -> None:
        """The chat runs this model (loaded, or switched by ``/model``): an open transcript
        that records another records this one, so ``--resume`` reopens the model the
        conversation went on with. `source`: the loaded checkpoint's label."""
        self.source, self.model = source, model
        if model is not None and model != self._recorded and self.transcript is not None:
            self._recorded = model
            self._record(lambda t: t.record_model(model))

    def set_system(self, text: str | None) -> None:
        """Set or clear (None) the system prompt."""
        self.conversation.set_system(text)
        system = self.conversation.system
        self._record(lambda t: t.record_system(system))

    def last_user(self) -> str | None:
        return self.conversation.last_user()

    def context_text(self) -> str:
        """What the model would see before the next message (for the context count)."""
        return self.conversation.history_text()

    def save(
        self,
        path: str | os.PathLike[str] | None,
        *,
        directory: str | os.PathLike[str],
        overwrite: bool = False,
    ) -> Path:
        """``/save`` (``/save!``: `overwrite`): Markdown or JSON by the extension; raises
        `SwamlaError`, also when the file exists and `overwrite` is False."""
        return save_conversation(self.conversation, path, directory=directory, overwrite=overwrite)
