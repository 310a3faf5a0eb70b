"""The scrolling chat pane. Stays at the bottom while text streams in, until the user
scrolls up (Textual's anchor); scrolling back to the bottom re-attaches it.

The token inspector's messages from the replies (`ChatMessage.TokenFocused`,
`AlternativePicked`, `InspectLeft`) stop here and go to `inspector` (the app's
`InspectorController`), so the app class needs no handler for them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from textual import on
from textual.containers import VerticalScroll
from textual.message import Message

from .chat_message import ChatMessage


class InspectorHandler(Protocol):
    def token_focused(self, widget: ChatMessage, index: int | None, hover: bool) -> None: ...
    def alternative_picked(self, widget: ChatMessage, index: int, token: int) -> None: ...
    def inspect_left(self, widget: ChatMessage) -> None: ...


class ChatLog(VerticalScroll, can_focus=True):
    DEFAULT_CSS = """
    ChatLog {
        height: 1fr;
        padding: 1 0 0 0;
    }
    """

    markdown = False
    """New assistant messages render as Markdown (the app's ``/markdown`` setting)."""
    probs = False
    """New assistant messages show token probabilities (the app's ``/probs`` setting)."""
    inspector: InspectorHandler | None = None

    class Deferred(Message):
        """`call()` on the UI thread (posted from a worker: never blocks it)."""

        def __init__(self, call: Callable[[], None]) -> None:
            super().__init__()
            self.call = call

    def on_mount(self) -> None:
        self.anchor()

    def add_message(self, role: str, text: str = "") -> ChatMessage:
        message = ChatMessage(role, text, markdown=self.markdown)
        message.probs = self.probs
        self.mount(message)
        return message

    def messages(self) -> list[ChatMessage]:
        return list(self.query(ChatMessage))

    @on(ChatMessage.TokenFocused)
    def _token_focused(self, event: ChatMessage.TokenFocused) -> None:
        event.stop()
        if self.inspector is not None:
            self.inspector.token_focused(event.widget, event.index, event.hover)

    @on(ChatMessage.AlternativePicked)
    def _alternative_picked(self, event: ChatMessage.AlternativePicked) -> None:
        event.stop()
        if self.inspector is not None:
            self.inspector.alternative_picked(event.widget, event.index, event.token)

    @on(ChatMessage.InspectLeft)
    def _inspect_left(self, event: ChatMessage.InspectLeft) -> None:
        event.stop()
        if self.inspector is not None:
            self.inspector.inspect_left(event.widget)

    @on(Deferred)
    def _deferred(self, event: Deferred) -> None:
        event.stop()
        event.call()
