"""One message in the chat pane: user, assistant (streamed), notice or error."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ...safe_text import visible

ROLE_TITLES = {"user": "You", "assistant": "Assistant", "notice": "", "error": "Error"}


class ChatMessage(Widget):
    """A message. An assistant message is replaced with `set_text` as the reply streams in
    (from the throttled buffer) and finished with `mark`."""

    DEFAULT_CSS = """
    ChatMessage {
        width: 1fr;
        height: auto;
        padding: 0 1;
        margin: 0 1 1 1;
    }
    ChatMessage > .chat-message--role { text-style: bold; }
    ChatMessage > .chat-message--status { color: $text-muted; text-style: italic; }
    ChatMessage.-user {
        border-left: outer $primary;
        background: $primary 8%;
    }
    ChatMessage.-user > .chat-message--role { color: $primary; }
    ChatMessage.-assistant { border-left: outer $success; }
    ChatMessage.-assistant > .chat-message--role { color: $success; }
    ChatMessage.-stopped > .chat-message--status { color: $warning; }
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
    """

    COMPONENT_CLASSES = {"chat-message--role", "chat-message--status"}

    def __init__(self, role: str, text: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id, classes=f"-{role}")
        self.role = role
        self.text = text
        self.status = ""

    def _render_text(self) -> None:
        self.refresh(layout=True)

    def render(self) -> Text:
        shown = self.text
        streaming = self.has_class("-streaming")
        if self.role == "assistant" and not shown and streaming:
            shown = "…"
        text = Text(end="")
        title = ROLE_TITLES.get(self.role, "")
        if title and self.role != "error":
            text.append(title, style=self.get_component_rich_style("chat-message--role"))
            text.append("\n")
        if self.role == "error":
            text.append("⚠ ")
        text.append(visible(shown))  # model output and notices: no raw escapes
        status = "generating…" if streaming else self.status
        if status:
            text.append(
                f"\n— {status}", style=self.get_component_rich_style("chat-message--status")
            )
        return text

    def set_text(self, text: str) -> None:
        self.text = text
        self._render_text()

    def set_streaming(self, streaming: bool) -> None:
        self.set_class(streaming, "-streaming")
        self._render_text()

    def mark(self, status: str, *, stopped: bool = False) -> None:
        """Finish the message with a short status in its bottom border (e.g. "stopped")."""
        self.status = status
        self.set_class(False, "-streaming")
        self.set_class(stopped, "-stopped")
        self._render_text()
