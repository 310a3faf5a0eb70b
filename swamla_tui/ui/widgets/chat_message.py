"""One message in the chat pane: user, assistant (streamed), notice or error.

User and assistant messages can be focused (click, or Tab from the chat) and ``c`` copies
the focused one. Assistant replies are raw text by default (these are base models,
whose output is rarely meant as Markdown); `set_markdown` renders them as Markdown.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.text import Text
from textual.binding import Binding
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
    ChatMessage:focus { background: $boost; }
    ChatMessage.-user:focus { background: $primary 16%; }
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
    BINDINGS = [Binding("c", "copy", "Copy", tooltip="Copy this message to the clipboard")]

    def __init__(
        self, role: str, text: str = "", *, id: str | None = None, markdown: bool = False
    ) -> None:
        super().__init__(id=id, classes=f"-{role}")
        self.role = role
        self.text = text
        self.status = ""
        self.markdown = markdown
        self.can_focus = role in ("user", "assistant")

    def _render_text(self) -> None:
        self.refresh(layout=True)

    def render(self) -> RenderableType:
        shown = visible(self.text)  # model output and notices: no raw escapes
        streaming = self.has_class("-streaming")
        if self.role == "assistant" and not shown and streaming:
            shown = "…"
        head = Text(end="")
        title = ROLE_TITLES.get(self.role, "")
        if title and self.role != "error":
            head.append(title, style=self.get_component_rich_style("chat-message--role"))
            head.append("\n")
        if self.role == "error":
            head.append("⚠ ")
        status = "generating…" if streaming else self.status
        style = self.get_component_rich_style("chat-message--status")
        tail = Text(f"— {status}", style=style, end="") if status else None
        if self.markdown and self.role == "assistant" and self.text:
            head.rstrip()  # in place: Group puts each part on its own line
            parts: list[RenderableType] = [head, Markdown(shown)]
            return Group(*parts, tail) if tail is not None else Group(*parts)
        text = Text(end="").join([head, Text(shown, end="")])
        if tail is not None:
            text.append("\n")
            text.append_text(tail)
        return text

    def set_markdown(self, markdown: bool) -> None:
        """Render the reply as Markdown or as raw text (assistant messages only)."""
        if self.markdown != markdown:
            self.markdown = markdown
            self._render_text()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        who = "your" if self.role == "user" else "the assistant's"
        self.notify(f"Copied {who} message.", timeout=2)

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
