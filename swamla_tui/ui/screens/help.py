"""Help screen (F1 or ?): keys and slash commands."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ...commands import COMMANDS

# (keys, what they do): the chat screen's keys, also listed in the README.
KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "Send the message"),
    (
        "Ctrl+J",
        "New line in the message (also Shift+Enter / Alt+Enter where the terminal sends them)",
    ),
    ("Up / Down", "Previous / next sent message (on the first / last line of the input)"),
    ("Tab / Right", "Accept the suggested slash command"),
    ("Esc or Ctrl+C", "Stop the reply in progress (the partial reply stays)"),
    ("Ctrl+L", "Clear the conversation"),
    ("Ctrl+R", "Retry the last reply"),
    ("Ctrl+S", "Save the conversation"),
    ("Ctrl+T", "Toggle dark / light theme"),
    ("Ctrl+B", "Show / hide the sampling sidebar"),
    ("F2", "Focus the sampling sliders"),
    ("Ctrl+P", "Command palette"),
    ("F1 or ?", "This help (? when the input is not focused)"),
    ("Ctrl+Q", "Quit"),
    ("Sliders", "Left/Right step, Shift+Left/Right big step, Home/End ends, click or drag"),
    ("Scroll", "Mouse wheel or PgUp/PgDn in the chat; scrolling up stops following"),
)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 96;
        max-width: 100%;
        height: 90%;
        background: $surface;
        border: thick $primary 60%;
        border-title-color: $primary;
        padding: 0 1;
    }
    HelpScreen VerticalScroll { height: 1fr; }
    HelpScreen .help--footer { color: $text-muted; height: 1; }
    """

    BINDINGS = [
        Binding("escape,q,f1,question_mark", "dismiss_help", "Close", show=True),
    ]

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Help"
            with VerticalScroll():
                yield Static(self._keys_table(), id="help-keys")
                yield Static(self._commands_table(), id="help-commands")
            yield Static("Esc / q / F1: close", classes="help--footer")

    def _keys_table(self) -> Table:
        table = Table(title="Keys", title_justify="left", expand=True, box=None, padding=(0, 1))
        table.add_column("Key", style="bold", no_wrap=True)
        table.add_column("Action")
        for key, action in KEYS:
            table.add_row(Text(key), Text(action))
        return table

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

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
