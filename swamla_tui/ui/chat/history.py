"""The chat's past conversations: ``--resume [ID]`` at start, and opening one from the
conversation list (`swamla_tui.ui.screens.conversations`, Ctrl+O, ``/conversations``).

Either way the session reopens the transcript (`ChatSession.resume`: a conversation open
in another instance continues in a copy) and its turns are shown; the conversation shown
before stays whole in its own transcript. Opening one made with another model says so in
one notice (``/model`` switches); ``--resume`` chose its model before the app started
(`swamla_tui.cli.resume`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...base.errors import SwamlaError
from ...chat.conversations import ModelRef, model_of
from ...chat.session import Resumed, count_noun
from ...chat.transcript import TranscriptStore

if TYPE_CHECKING:  # pragma: no cover
    from ..screens.chat import ChatScreen

__all__ = ["ConversationHistory"]


class ConversationHistory:
    """``--resume`` and the conversation list of `screen`."""

    def __init__(self, screen: ChatScreen) -> None:
        self.screen = screen

    def resume_start(self) -> None:
        """``--resume`` (the latest) or ``--resume ID`` (the CLI passes its path)."""
        screen = self.screen
        target = screen.options.resume
        try:
            if isinstance(target, str) and target:
                resumed: Resumed | None = screen.session.resume(Path(target))
            else:
                resumed = screen.session.resume_latest()
        except SwamlaError as exc:
            screen.add_notice(f"Could not resume: {exc}", error=True)
            return
        if resumed is None:
            screen.add_notice("No earlier conversation to resume.")
            return
        self.show(resumed, "Resumed")

    def show(self, resumed: Resumed, verb: str) -> None:
        """The resumed conversation's turns in the chat, and what to know about it."""
        screen = self.screen
        path = resumed.path
        if resumed.skipped:
            n = resumed.skipped
            screen.add_notice(
                f"Skipped {n} unreadable line{'s' if n != 1 else ''} of {path.name}.", error=True
            )
        turns = screen.conversation.turns
        for turn in turns:
            user = screen.chat.add_message("user", turn.user)
            reply = screen.chat.add_message("assistant", turn.assistant)
            if turn.stopped:
                reply.mark("stopped", stopped=True)
            screen.turn_widgets.append((user, reply))
        screen.add_notice(f"{verb} {count_noun(len(turns), 'turn')} from {path.name}.")
        transcript = screen.session.transcript
        if resumed.busy and transcript is not None:
            screen.add_notice(
                f"{path.name} is open in another swamla-tui: this chat continues in "
                f"{transcript.path.name}."
            )
        screen.update_context()

    def open(self, path: Path | None) -> None:
        """Show the conversation of transcript `path` in the chat (the list's Enter; the
        chat screen pushes the list)."""
        screen = self.screen
        if path is None or screen.busy():
            return
        current = screen.session.transcript
        if current is not None and current.path == path:
            screen.add_notice("That conversation is the one open.")
            return
        try:
            recorded = model_of(TranscriptStore.replay(path))
            resumed = screen.session.resume(path)
        except SwamlaError as exc:
            screen.add_notice(f"Could not open it: {exc}", error=True)
            return
        screen.clear_view()
        self.show(resumed, "Opened")
        mine = ModelRef.from_json(screen.session.model)
        if recorded is not None and (mine is None or not recorded.same_model(mine)):
            screen.add_notice(
                f"It was made with {recorded.describe()}; it goes on with the model loaded "
                f"now (/model {recorded.source} switches)."
            )
