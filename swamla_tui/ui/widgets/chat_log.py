"""The scrolling chat pane. Stays at the bottom while text streams in, until the user
scrolls up (Textual's anchor); scrolling back to the bottom re-attaches it.

The token inspector's messages from the replies (`ChatMessage.TokenFocused`,
`AlternativePicked`, `InspectLeft`) bubble through here to the chat screen's handlers."""

from __future__ import annotations

from textual.containers import VerticalScroll

from .chat_message import ChatMessage


class ChatLog(VerticalScroll, can_focus=True):
    DEFAULT_CSS = """
    ChatLog {
        height: 1fr;
        padding: 1 0 0 0;
    }
    """

    markdown = False
    """New assistant messages render as Markdown (the chat screen's ``/markdown`` setting)."""
    probs = False
    """New assistant messages show token probabilities (the chat screen's ``/probs`` setting)."""

    def on_mount(self) -> None:
        self.anchor()

    def add_message(self, role: str, text: str = "") -> ChatMessage:
        message = ChatMessage(role, text, markdown=self.markdown)
        message.probs = self.probs
        self.mount(message)
        return message

    def messages(self) -> list[ChatMessage]:
        return list(self.query(ChatMessage))
