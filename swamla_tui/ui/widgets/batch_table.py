"""The batch view's table: one row per prompt, filled in chunks, updated cell by cell.

A view of a list of `swamla_tui.batch.job.BatchRow`: `show` (re)fills it in chunks of
`ROW_CHUNK` rows per refresh so 10,000 prompts paint at once, and `update_row` updates
the few cells a result changes (never a rebuild).

An A/B run (`show(rows, rows_b)`) has one column per model for the completion and the
speed (`AB_COLUMNS`); the widths share out the terminal's width (`ab_widths`) so both
completions are readable at 80 columns, and the speeds fit beside them from ~110.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ...base.safe_text import visible
from ...batch.job import BatchRow, RowStatus

__all__ = ["AB_COLUMNS", "COLUMNS", "ROW_CHUNK", "BatchTable", "ab_widths", "clip", "pair_status"]

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

# A/B: (key, label, right-aligned); the widths come from `ab_widths`.
AB_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("n", "#", True),
    ("status", "status", False),
    ("prompt", "prompt", False),
    ("completion_a", "completion A", False),
    ("completion_b", "completion B", False),
    ("tok_s_a", "tok/s A", True),
    ("tok_s_b", "tok/s B", True),
)


def ab_widths(total: int) -> dict[str, int]:
    """Column widths of the A/B table for a screen `total` cells wide.

    Each column costs 2 cells of padding, the scrollbar 2. The two completions share what
    the number, status and prompt leave; the speed columns come after them (scrolled to
    at 80 columns, in view from about 110).
    """
    fixed = {"n": 4, "status": 7, "tok_s_a": 7, "tok_s_b": 7}
    prompt = 16 if total < 110 else 24
    speeds = 2 * (7 + 2) if total >= 110 else 0
    left = total - 2 - 5 * 2 - fixed["n"] - fixed["status"] - prompt - speeds
    each = max(16, left // 2)
    return {**fixed, "prompt": prompt, "completion_a": each, "completion_b": each}


def pair_status(a: BatchRow, b: BatchRow) -> RowStatus:
    """One status for a prompt's two rows (A/B): the least finished side wins."""
    both = (a.status, b.status)
    if "running" in both or ("done" in both and "queued" in both):
        return "running"  # between A's chunk and B's
    order: tuple[RowStatus, ...] = ("error", "stopped", "queued")
    for status in order:
        if status in both:
            return status
    return "done"


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
    """Prompts and their results; row keys are the row indices as strings.

    `rows_b` (an A/B run): the second model's rows, parallel to `rows_shown`.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_shown: list[BatchRow] = []
        self.rows_b: list[BatchRow] | None = None
        self.added = 0
        self._generation = 0
        self._styles: dict[str, str] = {}
        self._widths: dict[str, int] = dict(WIDTHS)
        self._layout: str = ""

    def on_mount(self) -> None:
        variables = self.app.theme_variables
        self._styles = {s: variables.get(v, "") for s, v in STATUS_STYLE_VARS.items()}
        self._set_columns(ab=False)

    def _set_columns(self, *, ab: bool) -> None:
        """The one-model columns, or the A/B ones sized to the screen's width now."""
        layout = "ab" if ab else "one"
        if layout == self._layout:
            return
        self.clear(columns=True)
        self._layout = layout
        if not ab:
            self._widths = dict(WIDTHS)
            for key, label, width, right in COLUMNS:
                self.add_column(
                    Text(label, justify="right" if right else "left"), key=key, width=width
                )
            return
        self._widths = ab_widths(self.app.size.width)
        for key, label, right in AB_COLUMNS:
            text = Text(label, justify="right" if right else "left")
            self.add_column(text, key=key, width=self._widths[key])

    def style_of(self, status: str) -> str:
        return self._styles.get(status, "")

    # -- filling -------------------------------------------------------------------------

    def show(self, rows: list[BatchRow], rows_b: list[BatchRow] | None = None) -> None:
        """Show `rows` (replacing any; `rows_b`: an A/B run); fills over the next refreshes."""
        self.clear()
        self._set_columns(ab=rows_b is not None)
        self.rows_shown = rows
        self.rows_b = rows_b
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
        if self.rows_b is not None:
            status = pair_status(row, self.rows_b[row.index])
            truncated = row.truncated or self.rows_b[row.index].truncated
        else:
            status, truncated = row.status, row.truncated
        label = "done✂" if status == "done" and truncated else status
        return Text(label, style=self.style_of(status))

    def _number_cells(self, row: BatchRow) -> tuple[Text, Text, Text]:
        tps = row.tokens_per_second
        return (
            Text("" if row.new_tokens is None else str(row.new_tokens), justify="right"),
            Text("" if row.seconds is None else f"{row.seconds:.2f}", justify="right"),
            Text("" if tps is None else f"{tps:.1f}", justify="right"),
        )

    def _completion_text(self, row: BatchRow, width: int) -> Text:
        if row.error:
            return Text(clip(row.error, width), style=self.style_of("error"))
        if row.has_result and not row.completion.strip():
            return Text("(empty)", style=self.style_of("queued"))
        if self.rows_b is not None and not row.has_result and row.status != "queued":
            return Text("…", style=self.style_of(row.status))  # this side's turn is coming
        return Text(clip(row.completion, width))

    def _cells(self, row: BatchRow) -> list[Text]:
        head = [
            Text(str(row.index + 1), justify="right"),
            self._status_text(row),
            Text(clip(row.prompt, self._widths["prompt"])),
        ]
        if self.rows_b is None:
            return [
                *head,
                self._completion_text(row, WIDTHS["completion"]),
                *self._number_cells(row),
            ]
        b = self.rows_b[row.index]
        return [
            *head,
            self._completion_text(row, self._widths["completion_a"]),
            self._completion_text(b, self._widths["completion_b"]),
            self._number_cells(row)[2],
            self._number_cells(b)[2],
        ]

    def update_row(self, row: BatchRow, *, status_only: bool = False) -> None:
        """Update the cells of prompt `row.index` (either side's row of an A/B run; rows
        not added yet get their data when added)."""
        if row.index >= self.added:
            return
        key = str(row.index)
        if self.rows_b is not None:
            row = self.rows_shown[row.index]  # the A side: the cells read both
        self.update_cell(key, "status", self._status_text(row))
        if status_only:
            return
        cells = self._cells(row)
        keys = [c[0] for c in COLUMNS] if self.rows_b is None else [c[0] for c in AB_COLUMNS]
        for col, cell in list(zip(keys, cells, strict=True))[3:]:
            self.update_cell(key, col, cell)
