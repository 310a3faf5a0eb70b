"""The message input: a TextArea where Enter sends and Ctrl+J (or Shift+Enter / Alt+Enter
where the terminal reports them) inserts a newline.

Up on the first line / down on the last line walk the history of sent messages. While a
slash command is typed, the rest of the command name is suggested in dim text; Tab or
Right accepts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

Completer = Callable[[str], "list[str]"]


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
        self.sent_history: list[str] = []
        self._history_index: int | None = None
        self._draft = ""

    # -- sending, newline -----------------------------------------------------------------

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        await super()._on_key(event)

    def submit(self) -> None:
        value = self.text
        if not value.strip():
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

    def update_suggestion(self) -> None:
        text = self.text
        self.suggestion = ""
        if (
            self.completer is None
            or not text.startswith("/")
            or "\n" in text
            or self.cursor_location != self.document.end
        ):
            return
        try:
            matches = self.completer(text)
        except Exception:
            return
        for match in matches:
            if match.startswith(text) and len(match) > len(text):
                self.suggestion = match[len(text) :]
                return

    def action_accept_suggestion(self) -> None:
        if self.suggestion:
            self.insert(self.suggestion)
        else:
            self.screen.focus_next()
