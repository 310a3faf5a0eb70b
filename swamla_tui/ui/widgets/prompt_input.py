"""The message input: a TextArea where Enter sends and Ctrl+J (or Shift+Enter / Alt+Enter
where the terminal reports them) inserts a newline.

Up on the first line / down on the last line walk the history of sent messages. While a
slash command is typed, the rest of the first matching name is suggested in dim text and
every match is listed under the input; Tab completes, and Tab again cycles through the
matches (``/s`` -> ``/save``, ``/seed``, ``/system``).

Keys handled here and not through bindings: Enter, the newline keys and the chat-scroll
keys (PgUp/PgDn, Ctrl+Home/End, posted as `ScrollChat`). Textual runs a binding only
after the key has bubbled up to the app, so a burst of typed keys (a paste-like
``line one`` Ctrl+J ``line two``) would otherwise get the newline after the later
characters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

Completer = Callable[[str], "list[str]"]
ScrollTarget = Literal["page_up", "page_down", "home", "end"]

NEWLINE_KEYS = frozenset({"ctrl+j", "shift+enter", "alt+enter"})
SCROLL_KEYS: dict[str, ScrollTarget] = {
    "pageup": "page_up",
    "pagedown": "page_down",
    "ctrl+home": "home",
    "ctrl+end": "end",
}


class PromptInput(TextArea):
    DEFAULT_CSS = """
    PromptInput {
        height: auto;
        min-height: 3;
        max-height: 10;
        border: tall $border-blurred;
        padding: 0 1;
    }
    PromptInput:focus { border: tall $primary; }
    PromptInput .text-area--cursor-line { background: transparent; }
    """

    BINDINGS = [
        Binding("ctrl+j,shift+enter,alt+enter", "newline", "Newline", show=False),
        Binding("tab", "accept_suggestion", "Complete", show=False),
    ]

    @dataclass
    class Held(Message):
        """Enter was pressed while `keep_text` said no: the text stays in the input."""

        input: PromptInput
        value: str

    @dataclass
    class ScrollChat(Message):
        """PgUp/PgDn/Ctrl+Home/Ctrl+End: scroll the chat, the input keeps the focus."""

        where: ScrollTarget

    @dataclass
    class Submitted(Message):
        """Enter was pressed: `value` is the text (the input is cleared)."""

        input: PromptInput
        value: str

        @property
        def control(self) -> PromptInput:
            return self.input

    def __init__(
        self,
        *,
        completer: Completer | None = None,
        placeholder: str = "",
        id: str | None = None,
    ) -> None:
        super().__init__(
            "",
            id=id,
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            placeholder=placeholder,
            highlight_cursor_line=False,
        )
        self.completer = completer
        self.keep_text: Callable[[str], bool] | None = None
        """When it returns True for the text, Enter keeps it in the input (posts `Held`)."""
        self._cycle: list[str] = []
        self._cycle_index = -1
        self.sent_history: list[str] = []
        self._history_index: int | None = None
        self._draft = ""

    # -- sending, newline -----------------------------------------------------------------

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        if key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        if key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.action_newline()
            return
        if key in SCROLL_KEYS:
            event.stop()
            event.prevent_default()
            self.post_message(self.ScrollChat(SCROLL_KEYS[key]))
            return
        if key != "tab":
            self._cycle = []
        await super()._on_key(event)

    def submit(self) -> None:
        value = self.text
        if not value.strip():
            return
        if self.keep_text is not None and self.keep_text(value):
            self.post_message(self.Held(self, value))
            return
        if not self.sent_history or self.sent_history[-1] != value:
            self.sent_history.append(value)
        self._history_index = None
        self._draft = ""
        self.clear()
        self.post_message(self.Submitted(self, value))

    def action_newline(self) -> None:
        start, end = self.selection
        self._replace_via_keyboard("\n", start, end)

    # -- history --------------------------------------------------------------------------

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0 and self.sent_history:
            self.history_previous()
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if (
            not select
            and self._history_index is not None
            and self.cursor_location[0] == self.document.line_count - 1
        ):
            self.history_next()
            return
        super().action_cursor_down(select)

    def history_previous(self) -> None:
        if not self.sent_history:
            return
        if self._history_index is None:
            self._draft = self.text
            self._history_index = len(self.sent_history) - 1
        elif self._history_index > 0:
            self._history_index -= 1
        else:
            return
        self._show(self.sent_history[self._history_index])

    def history_next(self) -> None:
        if self._history_index is None:
            return
        if self._history_index < len(self.sent_history) - 1:
            self._history_index += 1
            self._show(self.sent_history[self._history_index])
        else:
            self._history_index = None
            self._show(self._draft)

    def _show(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    # -- command suggestions --------------------------------------------------------------

    def matches(self, text: str) -> list[str]:
        """The completions of `text` (a one-line slash command typed at the end)."""
        if (
            self.completer is None
            or not text.startswith("/")
            or "\n" in text
            or self.cursor_location != self.document.end
        ):
            return []
        try:
            return [m for m in self.completer(text) if m.startswith(text) and m != text]
        except Exception:
            return []

    def update_suggestion(self) -> None:
        text = self.text
        self.suggestion = ""
        if self._cycle and text in self._cycle:
            return  # cycling: the list stays as it is
        matches = self.matches(text)
        if matches:
            self.suggestion = matches[0][len(text) :]
        self.border_subtitle = "  ".join(matches) if len(matches) > 1 else ""

    def action_accept_suggestion(self) -> None:
        """Tab: complete; with several matches, each Tab shows the next one."""
        if self._cycle:
            self._cycle_index = (self._cycle_index + 1) % len(self._cycle)
            self._show(self._cycle[self._cycle_index])
            return
        matches = self.matches(self.text)
        if len(matches) > 1:
            self._cycle, self._cycle_index = matches, 0
            self.border_subtitle = "  ".join(matches) + "  (Tab: next)"
            self._show(matches[0])
        elif self.suggestion:
            self.insert(self.suggestion)
            self.border_subtitle = ""
        else:
            self.screen.focus_next()
