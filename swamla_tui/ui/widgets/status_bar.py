"""One-line status bar: model summary, tokens/s, context used / max length."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ...safe_text import visible


class StatusBar(Widget):
    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $text-muted;
        padding: 0 1;
    }
    StatusBar.-error { background: $error 30%; color: $text; }
    StatusBar.-busy { color: $text; }
    """

    status: reactive[str] = reactive("Starting…")
    model: reactive[str] = reactive("")
    speed: reactive[str] = reactive("")
    context: reactive[str] = reactive("")

    def set_speed(self, tokens_per_second: float | None, *, live: bool = False) -> None:
        if tokens_per_second is None:
            self.speed = ""
        else:
            self.speed = f"{tokens_per_second:.1f} tok/s" + (" …" if live else "")

    def set_context(self, used: int, maximum: int) -> None:
        self.context = f"ctx {used:,}/{maximum:,}"

    def render(self) -> Text:
        parts = [p for p in (self.status, self.model, self.speed, self.context) if p]
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for i, part in enumerate(parts):
            if i:
                text.append("  │  ", style="dim")
            text.append(visible(part), style="bold" if i == 0 else "")
        return text
