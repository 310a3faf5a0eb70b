"""A modal list of keys built from a screen's `BINDINGS` (chat help and batch help).

Each binding's row shows its keys as the user types them (``ctrl+r`` -> ``Ctrl+R``,
``R`` -> ``Shift+R``) and its tooltip (else its description); bindings that share an
action share a row. Keys that are not bindings (Enter in a table, mouse use) are passed
as `extra` rows. The box, title and footer styles are the shared ``.dialog`` rules in
``app.tcss``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["KeysHelpScreen", "key_label", "key_rows"]

_NAMES = {
    "escape": "Esc",
    "enter": "Enter",
    "tab": "Tab",
    "question_mark": "?",
    "plus": "+",
    "minus": "-",
    "equals_sign": "=",
    "pageup": "PgUp",
    "pagedown": "PgDn",
    "home": "Home",
    "end": "End",
    "left": "Left",
    "right": "Right",
    "up": "Up",
    "down": "Down",
}


def key_label(key: str) -> str:
    """``"ctrl+l"`` -> ``"Ctrl+L"``, ``"escape"`` -> ``"Esc"``, ``"R"`` -> ``"Shift+R"``."""
    *mods, base = key.split("+")
    if base in _NAMES:
        name = _NAMES[base]
    elif len(base) == 1 and base.isupper():
        mods.append("shift")
        name = base
    elif len(base) == 1:
        name = base.upper() if mods else base
    else:
        name = base.upper() if base[0] == "f" and base[1:].isdigit() else base.capitalize()
    return "+".join([m.capitalize() for m in mods] + [name])


def key_rows(
    bindings: Iterable[BindingType], extra: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """(keys, what they do) per action, in binding order, then `extra`."""
    order: list[str] = []
    keys: dict[str, list[str]] = {}
    text: dict[str, str] = {}
    for item in bindings:
        binding = item if isinstance(item, Binding) else Binding(*item)
        action = binding.action
        if action not in keys:
            order.append(action)
            keys[action] = []
            text[action] = binding.tooltip or binding.description
        elif not text[action]:
            text[action] = binding.tooltip or binding.description
        keys[action] += [key_label(k.strip()) for k in binding.key.split(",")]
    rows = [(" / ".join(dict.fromkeys(keys[a])), text[a]) for a in order if text[a]]
    return rows + list(extra)


class KeysHelpScreen(ModalScreen[None]):
    """Keys (and optionally more tables below them) in a closable box."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close")]

    def __init__(self, title: str, keys: Sequence[tuple[str, str]]) -> None:
        super().__init__(classes="dialog")
        self.title_text = title
        self.keys = list(keys)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            with VerticalScroll():
                yield Static(self._keys_table(), id="help-keys")
                for widget_id, renderable in self.sections():
                    yield Static(renderable, id=widget_id)
            yield Static("Esc / q / F1: close", classes="dialog--footer")

    def sections(self) -> Iterable[tuple[str, RenderableType]]:
        """More tables under the keys (the chat help adds the slash commands)."""
        return ()

    def _keys_table(self) -> Table:
        table = Table(title="Keys", title_justify="left", expand=True, box=None, padding=(0, 1))
        table.add_column("Key", style="bold", no_wrap=True)
        table.add_column("Action")
        for key, action in self.keys:
            table.add_row(Text(key), Text(action))
        return table

    def action_close(self) -> None:
        self.dismiss(None)
