"""One message in the chat pane: user, assistant (streamed), notice or error."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

ROLE_TITLES = {"user": "You", "assistant": "Assistant", "notice": "", "error": "Error"}


class ChatMessage(Static):
    """A message; assistant messages grow with `append` while the reply streams in."""

    DEFAULT_CSS = """
    ChatMessage {
        width: 1fr;
        height: auto;
        padding: 0 1;
        margin: 0 1 1 1;
    }
    ChatMessage.-user {
        border-left: outer $primary;
        background: $primary 8%;
        border-title-color: $primary;
    }
    ChatMessage.-assistant {
        border-left: outer $success;
        border-title-color: $success;
    }
    ChatMessage.-notice {
        color: $text-muted;
        text-style: italic;
        margin: 0 1 1 3;
    }
    ChatMessage.-error {
        color: $error;
        border-left: outer $error;
        background: $error 10%;
    }
    ChatMessage.-streaming { border-subtitle-color: $text-muted; }
    ChatMessage.-stopped { border-subtitle-color: $warning; }
    """

    def __init__(self, role: str, text: str = "", *, id: str | None = None) -> None:
        super().__init__("", id=id, classes=f"-{role}", markup=False)
        self.role = role
        self.text = text
        self.status = ""
        self._render_text()

    def on_mount(self) -> None:
        title = ROLE_TITLES.get(self.role, "")
        if title and self.role != "error":
            self.border_title = title

    def _render_text(self) -> None:
        shown = self.text
        if self.role == "assistant" and not shown:
            shown = "…" if self.has_class("-streaming") else ""
        prefix = "⚠ " if self.role == "error" else ""
        self.update(Text(prefix + shown, end=""))

    def append(self, piece: str) -> None:
        if piece:
            self.text += piece
            self._render_text()

    def set_text(self, text: str) -> None:
        self.text = text
        self._render_text()

    def set_streaming(self, streaming: bool) -> None:
        self.set_class(streaming, "-streaming")
        self.border_subtitle = "generating…" if streaming else self.status
        self._render_text()

    def mark(self, status: str, *, stopped: bool = False) -> None:
        """Finish the message with a short status in its bottom border (e.g. "stopped")."""
        self.status = status
        self.set_class(False, "-streaming")
        self.set_class(stopped, "-stopped")
        self.border_subtitle = status
        self._render_text()
