"""A one-line question docked at the bottom of a screen (batch: export path, file, size).

Hidden until `ask`; Enter hides the line again and posts `AskLine.Answered` with the
question's `mode` and the stripped answer (maybe empty); `hide` cancels, and so does Esc
(an empty answer). While it asks, the footer shows its own keys: the screen hides its
other actions (see `BatchScreen.check_action`).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

__all__ = ["AskLine"]


class AskLine(Input):
    DEFAULT_CSS = """
    AskLine { display: none; dock: bottom; margin: 0 1; }
    AskLine.-visible { display: block; }
    """

    BINDINGS = [
        Binding("enter", "submit", "OK"),
        Binding("escape", "cancel", "Cancel"),
    ]

    @dataclass
    class Answered(Message):
        mode: str
        value: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mode: str | None = None

    def ask(self, mode: str, question: str, value: str) -> None:
        self.mode = mode
        self.placeholder = question
        self.border_title = question
        self.value = value
        self.cursor_position = len(value)
        self.add_class("-visible")
        self.focus()

    def hide(self) -> None:
        self.mode = None
        self.remove_class("-visible")

    def action_cancel(self) -> None:
        mode = self.mode
        self.hide()
        if mode is not None:
            self.post_message(self.Answered(mode, ""))

    @on(Input.Submitted)
    def _answered(self, event: Input.Submitted) -> None:
        event.stop()
        mode, value = self.mode, event.value.strip()
        self.hide()
        if mode is not None:
            self.post_message(self.Answered(mode, value))
