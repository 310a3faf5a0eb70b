"""The whole prompt and completion of one batch row (Enter or a click on the row)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ...batch import BatchRow
from ...safe_text import visible

__all__ = ["BatchDetailScreen"]


def row_meta(row: BatchRow) -> str:
    """``done · finish: length · 8 new tokens · 0.50 s · 16.0 tok/s``."""
    meta: list[str] = [row.status]
    if row.finish_reason and row.finish_reason != "cancelled":
        meta.append(f"finish: {row.finish_reason}")
    if row.new_tokens is not None:
        meta.append(f"{row.new_tokens} new tokens")
    if row.seconds is not None:
        meta.append(f"{row.seconds:.2f} s")
    if row.tokens_per_second:
        meta.append(f"{row.tokens_per_second:.1f} tok/s")
    if row.truncated:
        meta.append("prompt cut to max_length (its last tokens kept)")
    return " · ".join(meta)


class BatchDetailScreen(ModalScreen[str | None]):
    """Returns "chat" for key c (open the prompt in the chat), else None."""

    DEFAULT_CSS = """
    BatchDetailScreen .detail--meta { color: $text-muted; height: auto; }
    BatchDetailScreen .detail--heading { color: $primary; text-style: bold; margin-top: 1; }
    BatchDetailScreen VerticalScroll { height: 1fr; }
    """

    BINDINGS = [
        Binding("escape,enter,q", "close", "Close"),
        Binding("c", "chat", "Open in chat"),
    ]

    def __init__(self, row: BatchRow) -> None:
        super().__init__(classes="dialog")
        self.row = row

    def compose(self) -> ComposeResult:
        row = self.row
        with Vertical() as box:
            box.border_title = f"Prompt {row.index + 1}"
            yield Static(Text(visible(row_meta(row))), classes="detail--meta")
            with VerticalScroll():
                yield Static("Prompt", classes="detail--heading")
                yield Static(Text(visible(row.prompt)), id="detail-prompt")
                yield Static("Completion", classes="detail--heading")
                body = row.completion
                if row.error:
                    body = f"error: {row.error}"
                elif not body and not row.has_result:
                    body = "(not run yet)"
                yield Static(Text(visible(body)), id="detail-completion")
            yield Static(
                "Esc / Enter: close · c: open the prompt in chat", classes="dialog--footer"
            )

    def action_close(self) -> None:
        self.dismiss(None)

    def action_chat(self) -> None:
        self.dismiss("chat")
