"""``/model PATH_OR_REPO``: switch the chat's model without restarting.

The new model loads in a daemon thread (a checkpoint read cannot be interrupted, and
quitting must not wait for it) through the CLI's `AppOptions.load_second`, the loader of
model B: it refuses first when the new model would not fit next to the loaded one (both
are in memory until the switch), then loads with the same flags. Progress is one notice;
on success the chat goes on with the new model (the conversation, its transcript and the
sampling settings stay; the transcript records the switch); on failure one error line,
and the old model is kept. Nothing generates during the load on the new model, and the
old one keeps answering until the switch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

from ...base.errors import one_line
from ...chat.conversations import ModelRef
from ...protocols import Model
from .second_model import model_name

if TYPE_CHECKING:  # pragma: no cover
    from ..screens.chat import ChatScreen
    from ..widgets.chat_message import ChatMessage

__all__ = ["ModelSwitch", "SwitchDone", "SwitchProgress"]


@dataclass
class SwitchProgress(Message):
    """The new model's load progress (posted from the load thread)."""

    text: str


@dataclass
class SwitchDone(Message):
    """The new model (`lm`), or why it could not be loaded (`error`, one line)."""

    source: str
    lm: Model | None
    error: str | None = None


class ModelSwitch:
    """The chat's ``/model``: `start(source)` loads, `progress` and `done` report."""

    def __init__(self, screen: ChatScreen) -> None:
        self.screen = screen
        self._notice: ChatMessage | None = None
        """The progress notice while a model loads (None: no switch in progress)."""

    @property
    def loading(self) -> bool:
        return self._notice is not None

    def show(self) -> None:
        """``/model`` without a path: what runs now."""
        screen = self.screen
        if screen.lm is None:
            screen.add_notice(screen.load_failed or "The model is still loading.")
            return
        ref = ModelRef.from_json(screen.session.model)
        where = ref.describe() if ref is not None else model_name(screen.lm)
        screen.add_notice(f"Model: {where} ({screen.lm.summary()}). /model PATH_OR_REPO switches.")

    def start(self, source: str) -> None:
        """Load `source` and switch to it once loaded (refused while anything runs)."""
        screen = self.screen
        load = screen.options.load_second
        first = screen.lm
        why = None
        if first is None:
            why = screen.load_failed or "The model is still loading: /model once it is loaded."
        elif self.loading or screen.compare.loading:
            why = "A model is loading: wait for it, then try again."
        elif load is None:
            why = "No other model can be loaded here."
        if why is not None:
            screen.add_notice(why, error=load is None)
            return
        if screen.busy():
            return
        assert first is not None and load is not None
        self._notice = screen.add_notice(f"Loading {model_name(None, source)}…")
        screen.status_bar.status = f"Loading {model_name(None, source)}…"
        post = screen.post_message

        def progress(text: str) -> None:
            post(SwitchProgress(str(text)))

        def target() -> None:
            """The load thread: reports with messages only."""
            try:
                lm = load(first, source, progress)
            except BaseException as exc:  # noqa: BLE001 - one line in the chat, the old model stays
                post(SwitchDone(source, None, one_line(exc)))
                return
            post(SwitchDone(source, lm))

        threading.Thread(target=target, name="swamla-load-switch", daemon=True).start()

    def progress(self, text: str) -> None:
        if self._notice is not None:
            self._notice.set_text(text)
            self.screen.status_bar.status = text

    def done(self, message: SwitchDone) -> None:
        """On the UI thread: switch to the new model, or keep the old one."""
        notice, self._notice = self._notice, None
        if notice is None:
            return
        screen = self.screen
        if message.lm is None:
            notice.remove()
            screen.status_bar.status = "Ready"
            old = model_name(screen.lm)
            screen.add_notice(
                f"Could not switch models: {message.error} (still on {old}).", error=True
            )
            return
        screen.use_model(message.lm, ModelRef.of(message.source))
        notice.set_text(f"Switched to {message.lm.summary()}; the conversation goes on with it.")
