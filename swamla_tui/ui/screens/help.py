"""Chat help (F1 or ?): the chat screen's keys (its `BINDINGS`) and the slash commands."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.binding import BindingType

from ...chat.commands.parse import COMMANDS
from .keys_help import KeysHelpScreen, key_rows

__all__ = ["HelpScreen"]

INPUT_KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "Send the message"),
    (
        "Ctrl+J",
        "New line in the message (also Shift+Enter / Alt+Enter where the terminal sends them)",
    ),
    ("Up / Down", "Previous / next sent message (on the first / last line of the input)"),
    ("Tab / Right", "Accept the suggested slash command"),
)
"""Keys of the message input (its own widget's bindings and key handling)."""

OTHER_KEYS: tuple[tuple[str, str], ...] = (
    ("Ctrl+P", "Command palette"),
    (
        "Sliders",
        "Left/Right step, Shift+Left/Right big step, Home/End ends, Down/Up the next / "
        "previous slider, click or drag",
    ),
    (
        "Scroll",
        "Mouse wheel, PgUp/PgDn or Ctrl+Home/Ctrl+End (also while typing) in the chat; "
        "scrolling up stops following",
    ),
    ("c", "Copy the focused message (click it, or Tab into the chat)"),
)


class HelpScreen(KeysHelpScreen):
    """The chat screen's keys and the slash commands."""

    def __init__(self, bindings: Iterable[BindingType]) -> None:
        super().__init__("Help", [*INPUT_KEYS, *key_rows(bindings), *OTHER_KEYS])

    def sections(self) -> Iterable[tuple[str, RenderableType]]:
        yield "help-commands", self._commands_table()

    def _commands_table(self) -> Table:
        table = Table(
            title="\nSlash commands", title_justify="left", expand=True, box=None, padding=(0, 1)
        )
        table.add_column("Command", style="bold", no_wrap=True)
        table.add_column("Description")
        for spec in COMMANDS:
            aliases = ", ".join(f"/{a}" for a in spec.aliases)
            desc = Text(spec.help)
            if aliases:
                desc.append(f"  (also {aliases})", style="dim")
            table.add_row(Text(spec.usage), desc)
        table.add_row(Text("//text"), Text("Send a message that starts with /"))
        return table
