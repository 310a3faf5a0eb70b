"""The batch view's table: one row per prompt, filled in chunks, updated cell by cell.

A view of a list of `swamla_tui.batch.BatchRow`: `show` (re)fills it in chunks of
`ROW_CHUNK` rows per refresh so 10,000 prompts paint at once, and `update_row` updates
the few cells a result changes (never a rebuild).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ...batch import BatchRow, RowStatus
from ...safe_text import visible

__all__ = ["COLUMNS", "ROW_CHUNK", "BatchTable", "clip"]

ROW_CHUNK = 500

# (key, label, width, right-aligned)
# The status comes right after the number: at 80 columns the last columns are cut.
COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("n", "#", 5, True),
    ("status", "status", 7, False),
    ("prompt", "prompt", 26, False),
    ("completion", "completion", 42, False),
    ("new_tokens", "new tokens", 10, True),
    ("seconds", "seconds", 7, True),
    ("tok_s", "tok/s", 7, True),
)
WIDTHS = {key: width for key, _label, width, _right in COLUMNS}

STATUS_STYLE_VARS: dict[RowStatus, str] = {
    "queued": "text-muted",
    "running": "warning",
    "done": "success",
    "stopped": "text-muted",
    "error": "error",
}


def clip(text: str, width: int) -> str:
    """First line of `text`, cut to `width` cells with an ellipsis (cheap: no measuring).

    Control characters are made visible first (prompts and completions are untrusted).
    """
    lines = visible(text).strip().splitlines()
    first = lines[0] if lines else ""
    more = len(lines) > 1
    if len(first) > width or (more and len(first) >= width):
        return first[: width - 1] + "…"
    return first + (" ↵" if more and len(first) + 2 <= width else "")


class BatchTable(DataTable[Text]):
    """Prompts and their results; row keys are the row indices as strings."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_shown: list[BatchRow] = []
        self.added = 0
        self._generation = 0
        self._styles: dict[str, str] = {}

    def on_mount(self) -> None:
        variables = self.app.theme_variables
        self._styles = {s: variables.get(v, "") for s, v in STATUS_STYLE_VARS.items()}
        for key, label, width, right in COLUMNS:
            self.add_column(Text(label, justify="right" if right else "left"), key=key, width=width)

    def style_of(self, status: str) -> str:
        return self._styles.get(status, "")

    # -- filling -------------------------------------------------------------------------

    def show(self, rows: list[BatchRow]) -> None:
        """Show `rows` (replacing any); the table fills over the next refreshes."""
        self.clear()
        self.rows_shown = rows
        self.added = 0
        self._generation += 1
        self._fill(self._generation)

    def _fill(self, generation: int) -> None:
        if generation != self._generation:
            return  # another list was shown meanwhile
        end = min(self.added + ROW_CHUNK, len(self.rows_shown))
        for row in self.rows_shown[self.added : end]:
            self.add_row(*self._cells(row), key=str(row.index))
        self.added = end
        if self.added < len(self.rows_shown):
            self.call_after_refresh(self._fill, generation)

    def selected(self) -> BatchRow | None:
        """The row under the cursor, if it is in the table yet."""
        if not self.rows_shown or self.row_count == 0:
            return None
        index = self.cursor_row
        if 0 <= index < min(self.added, len(self.rows_shown)):
            return self.rows_shown[index]
        return None

    # -- cells ---------------------------------------------------------------------------

    def _status_text(self, row: BatchRow) -> Text:
        label = "done✂" if row.status == "done" and row.truncated else row.status
        return Text(label, style=self.style_of(row.status))

    def _number_cells(self, row: BatchRow) -> tuple[Text, Text, Text]:
        tps = row.tokens_per_second
        return (
            Text("" if row.new_tokens is None else str(row.new_tokens), justify="right"),
            Text("" if row.seconds is None else f"{row.seconds:.2f}", justify="right"),
            Text("" if tps is None else f"{tps:.1f}", justify="right"),
        )

    def _completion_text(self, row: BatchRow) -> Text:
        if row.error:
            return Text(clip(row.error, WIDTHS["completion"]), style=self.style_of("error"))
        if row.has_result and not row.completion.strip():
            return Text("(empty)", style=self.style_of("queued"))
        return Text(clip(row.completion, WIDTHS["completion"]))

    def _cells(self, row: BatchRow) -> list[Text]:
        return [
            Text(str(row.index + 1), justify="right"),
            self._status_text(row),
            Text(clip(row.prompt, WIDTHS["prompt"])),
            self._completion_text(row),
            *self._number_cells(row),
        ]

    def update_row(self, row: BatchRow, *, status_only: bool = False) -> None:
        """Update the cells of `row` (rows not added yet get their data when added)."""
        if row.index >= self.added:
            return
        key = str(row.index)
        self.update_cell(key, "status", self._status_text(row))
        if status_only:
            return
        self.update_cell(key, "completion", self._completion_text(row))
        new, secs, tps = self._number_cells(row)
        self.update_cell(key, "new_tokens", new)
        self.update_cell(key, "seconds", secs)
        self.update_cell(key, "tok_s", tps)
