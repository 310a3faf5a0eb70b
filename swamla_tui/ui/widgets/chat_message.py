"""One message in the chat pane: user, assistant (streamed), notice or error.

User and assistant messages can be focused (click, or Tab from the chat) and ``c`` copies
the focused one. Assistant replies are raw text by default (these are base models,
whose output is rarely meant as Markdown); `set_markdown` renders them as Markdown.

With token probabilities on (``/probs``), a reply that carries a `ReplyTree` renders
its tokens coloured by probability (`token_text`), and the message has an *inspect
mode* (F4 on the last reply, or a click on a token): a cursor moves token to token, the
details panel follows it (`TokenFocused`), and an alternative picked with Enter or
1-5 asks for a branch (`AlternativePicked`). Hovering a token shows its details in the
message's tooltip (an overlay: a panel that moved the chat under the pointer would flicker).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget

from ...base.safe_text import visible
from ...chat.token_tree import TOP_N, ReplyTree, alternatives
from .token_details import TokenDetails
from .token_text import navigable, next_token, token_text

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
    ChatMessage.-inspecting { border-left: outer $accent; }
    ChatMessage > .token--p0 { background: $error 55%; text-style: underline; }
    ChatMessage > .token--p1 { background: $error 25%; }
    ChatMessage > .token--p2 { background: $warning 35%; }
    ChatMessage > .token--p3 { background: $success 25%; }
    ChatMessage > .token--p4 { }
    ChatMessage > .token--cursor { text-style: reverse bold; }
    """

    COMPONENT_CLASSES = {
        "chat-message--role",
        "chat-message--status",
        "token--p0",
        "token--p1",
        "token--p2",
        "token--p3",
        "token--p4",
        "token--cursor",
    }
    BINDINGS = [
        Binding("c", "copy", "Copy", tooltip="Copy this message to the clipboard"),
        Binding("left", "move(-1)", "Token left", show=False),
        Binding("right", "move(1)", "Token right", show=False),
        Binding("home", "move(-100000)", "First token", show=False),
        Binding("end", "move(100000)", "Last token", show=False),
        Binding("up", "select(-1)", "Alternative up", show=False),
        Binding("down", "select(1)", "Alternative down", show=False),
        Binding("enter", "pick", "Branch", tooltip="Regenerate from the selected alternative"),
        *(Binding(str(n), f"pick({n - 1})", show=False) for n in range(1, TOP_N + 1)),
        Binding("escape", "leave", "Leave", tooltip="Leave inspect mode"),
    ]
    _INSPECT_ACTIONS = frozenset({"move", "select", "pick", "leave"})

    class TokenFocused(Message):
        """The token under the cursor (or, `hover`, the pointer) changed (None: none)."""

        def __init__(self, widget: ChatMessage, index: int | None, hover: bool = False) -> None:
            super().__init__()
            self.widget = widget
            self.index = index
            self.hover = hover

    class AlternativePicked(Message):
        """Regenerate the reply from alternative `token` at token `index`."""

        def __init__(self, widget: ChatMessage, index: int, token: int) -> None:
            super().__init__()
            self.widget = widget
            self.index = index
            self.token = token

    class InspectLeft(Message):
        """Esc in inspect mode: the app gives the focus back to the input."""

        def __init__(self, widget: ChatMessage) -> None:
            super().__init__()
            self.widget = widget

    def __init__(
        self, role: str, text: str = "", *, id: str | None = None, markdown: bool = False
    ) -> None:
        super().__init__(id=id, classes=f"-{role}")
        self.role = role
        self.text = text
        self.status = ""
        self.markdown = markdown
        self.can_focus = role in ("user", "assistant")
        self.reply_tree: ReplyTree | None = None
        """The reply's tokens and branches (recorded with token probabilities on)."""
        self.pieces: list[str] = []
        """Text each token of `tree.current` shows (`inspect_tree.clip_pieces`)."""
        self.probs = False
        self.inspecting = False
        self.cursor = -1
        self.selected = 0
        self._hovered: int | None = None

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
        if self.coloured and not streaming:
            head.append_text(self._tokens())
            if tail is not None:
                head.append("\n")
                head.append_text(tail)
            return head
        if self.markdown and self.role == "assistant" and self.text:
            # Group starts a part where the last one ended: the label ends its own line, or
            # the Markdown's first line would follow it and be cropped at the width
            head.rstrip()
            head.end = "\n"
            parts: list[RenderableType] = [head, Markdown(shown)]
            if tail is None:
                return Group(*parts)
            tail.end = "\n"  # Textual counts a Group's lines by its newlines: count this one
            return Group(*parts, tail)
        text = Text(end="").join([head, Text(shown, end="")])
        if tail is not None:
            text.append("\n")
            text.append_text(tail)
        return text

    # -- token probabilities ---------------------------------------------------------

    @property
    def coloured(self) -> bool:
        """Tokens are shown coloured (probabilities on, and this reply recorded them)."""
        return self.probs and self.reply_tree is not None and bool(navigable(self.pieces))

    def _tokens(self) -> Text:
        assert self.reply_tree is not None
        styles = [self.get_component_rich_style(f"token--p{b}", partial=True) for b in range(5)]
        return token_text(
            self.pieces,
            self.reply_tree.current.steps,
            styles.__getitem__,
            cursor=self.cursor if self.inspecting else None,
            cursor_style=self.get_component_rich_style("token--cursor", partial=True),
        )

    def set_tree(self, tree: ReplyTree | None, pieces: list[str]) -> None:
        """Show `tree.current` (its `pieces`) or, with None, plain text again."""
        self.reply_tree, self.pieces = tree, pieces
        if not self.coloured:
            self.leave()
        elif self.cursor not in navigable(pieces):
            self.cursor = navigable(pieces)[-1]
        self._render_text()

    def set_probs(self, on: bool) -> None:
        if self.probs != on:
            self.probs = on
            if not on:
                self.leave()
            self._render_text()

    def inspect(self, index: int | None = None) -> bool:
        """Enter inspect mode at token `index` (None: the last one); False if no tokens."""
        if not self.coloured:
            return False
        idx = navigable(self.pieces)
        self.cursor = index if index in idx else idx[-1]
        self.selected = 0
        self.inspecting = True
        self.add_class("-inspecting")
        self.focus()
        self._render_text()
        self.post_message(self.TokenFocused(self, self.cursor))
        return True

    def leave(self) -> None:
        if self.inspecting:
            self.inspecting = False
            self.remove_class("-inspecting")
            self._render_text()
            self.post_message(self.TokenFocused(self, None))

    def on_unmount(self) -> None:
        """Removed while inspected (/clear, /retry, /undo): the panel goes too."""
        if self.inspecting:
            try:
                for panel in self.app.query(TokenDetails):
                    panel.clear()
            except Exception:  # noqa: BLE001, S110 - the app is closing: nothing to hide
                pass

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self._INSPECT_ACTIONS:
            return self.inspecting
        return True

    def action_move(self, step: int) -> None:
        self.cursor = next_token(self.pieces, self.cursor, step)
        self.selected = 0
        self._render_text()
        self.post_message(self.TokenFocused(self, self.cursor))

    def action_select(self, step: int) -> None:
        if self.reply_tree is None:
            return
        n = len(alternatives(self.reply_tree.current.steps[self.cursor]))
        self.selected = min(max(self.selected + step, 0), max(0, n - 1))
        self.post_message(self.TokenFocused(self, self.cursor))

    def action_pick(self, which: int | None = None) -> None:
        if self.reply_tree is None:
            return
        alts = alternatives(self.reply_tree.current.steps[self.cursor])
        n = self.selected if which is None else which
        if 0 <= n < len(alts):
            self.post_message(self.AlternativePicked(self, self.cursor, alts[n].token))

    def action_leave(self) -> None:
        self.leave()
        self.post_message(self.InspectLeft(self))

    def _token_at(self, style: Style) -> int | None:
        index = style.meta.get("token") if style.meta else None
        return index if isinstance(index, int) else None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if not self.coloured or self.inspecting:
            return
        index = self._token_at(event.style)
        if index != self._hovered:
            self._hovered = index
            self.post_message(self.TokenFocused(self, index, hover=True))

    def on_click(self, event: events.Click) -> None:
        index = self._token_at(event.style)
        if index is not None and self.coloured:
            if self.inspecting and index == self.cursor:
                return
            self.inspect(index)

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
