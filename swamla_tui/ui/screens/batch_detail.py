"""The whole prompt and completion of one batch row (Enter or a click on the row).

In an A/B run both completions are shown, one under the other, each with its own figures.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ...base.safe_text import visible
from ...batch.job import BatchRow

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
    return " · ".join(meta) + timing_meta(row)


def timing_meta(row: BatchRow) -> str:
    """The row's measured figures on a line of their own (empty when none)."""
    t = row.timing
    parts: list[str] = []
    if isinstance(t.get("prompt_tokens"), int):
        parts.append(f"prompt {t['prompt_tokens']} tokens")
    if isinstance(t.get("prefill_s"), int | float):
        parts.append(f"prefill {t['prefill_s']:.2f} s ({t.get('prefill_tok_s') or 0:.1f} tok/s)")
    if isinstance(t.get("ttft_s"), int | float):
        parts.append(f"first token {t['ttft_s']:.2f} s")
    if isinstance(t.get("decode_tok_s"), int | float) and t["decode_tok_s"]:
        parts.append(f"decode {t['decode_tok_s']:.1f} tok/s")
    return ("\n" + " · ".join(parts)) if parts else ""


def _body(row: BatchRow) -> str:
    if row.error:
        return f"error: {row.error}"
    if not row.completion and not row.has_result:
        return "(not run yet)"
    return row.completion


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

    def __init__(
        self, row: BatchRow, row_b: BatchRow | None = None, *, names: tuple[str, str] = ("A", "B")
    ) -> None:
        super().__init__(classes="dialog")
        self.row = row
        self.row_b = row_b
        self.names = names

    def compose(self) -> ComposeResult:
        row, row_b = self.row, self.row_b
        with Vertical() as box:
            box.border_title = f"Prompt {row.index + 1}"
            if row_b is None:
                yield Static(Text(visible(row_meta(row))), classes="detail--meta")
            with VerticalScroll():
                yield Static("Prompt", classes="detail--heading")
                yield Static(Text(visible(row.prompt)), id="detail-prompt")
                if row_b is None:
                    yield Static("Completion", classes="detail--heading")
                    yield Static(Text(visible(_body(row))), id="detail-completion")
                else:
                    for suffix, side, name in (
                        ("a", row, self.names[0]),
                        ("b", row_b, self.names[1]),
                    ):
                        heading = f"Completion {suffix.upper()} · {name}"
                        yield Static(Text(visible(heading)), classes="detail--heading")
                        yield Static(Text(visible(row_meta(side))), classes="detail--meta")
                        yield Static(Text(visible(_body(side))), id=f"detail-completion-{suffix}")
            yield Static(
                "Esc / Enter: close · c: open the prompt in chat", classes="dialog--footer"
            )

    def action_close(self) -> None:
        self.dismiss(None)

    def action_chat(self) -> None:
        self.dismiss("chat")
