"""The batch view's bottom bar: ``3/6 · 1.2 s · ETA 1.2 s``, a progress bar, the batch size."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from ...batch.job import BatchRow, RunProgress, eta_seconds

__all__ = ["BatchBar", "fmt_duration"]


def fmt_duration(seconds: float) -> str:
    """``12.3 s``, ``4:05`` or ``1:02:03``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}:{sec:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"


class BatchBar(Horizontal):
    """Counts, progress and settings of the batch run (a view: `show` redraws it)."""

    DEFAULT_CSS = """
    BatchBar { height: 1; padding: 0 1; background: $panel; }
    BatchBar #batch-count { width: auto; min-width: 24; padding-right: 2; }
    BatchBar #batch-progress { width: 1fr; }
    BatchBar #batch-progress Bar { width: 1fr; }
    BatchBar #batch-info { width: auto; color: $text-muted; padding-left: 2; }
    """

    def compose(self) -> ComposeResult:
        yield Label("", id="batch-count")
        yield ProgressBar(id="batch-progress", show_eta=False, show_percentage=True)
        yield Label("", id="batch-info")

    def show(
        self,
        rows: list[BatchRow],
        run: RunProgress,
        *,
        now: float,
        running: bool,
        stopping: bool,
        batch_size: int,
        load_error: str | None,
        error_style: str = "",
        rows_b: list[BatchRow] | None = None,
    ) -> None:
        """`rows_b`: an A/B run, counted in prompt-model pairs (each prompt twice)."""
        count = self.query_one("#batch-count", Label)
        n = len(rows)
        sides = [rows] if rows_b is None else [rows, rows_b]
        # rows of this run that got a result or an error (a stopped row is not finished)
        finished = sum(
            1 for i in run.order for side in sides if side[i].status in ("done", "error")
        )
        total = run.total * len(sides)
        if load_error:
            count.update(Text("No prompts: o opens a file", style=error_style))
        elif running:
            text = f"{finished}/{total} · {fmt_duration(now - run.started)}"
            eta = eta_seconds(now - run.started, finished, total)
            if eta is not None:
                text += f" · ETA {fmt_duration(eta)}"
            if stopping:
                text += " · stopping…"
            count.update(text)
        elif run.total:
            verb = "stopped" if run.stopped else "done"
            count.update(f"{finished}/{total} {verb} in {fmt_duration(run.elapsed or 0.0)}")
        else:
            count.update(f"{n} prompt{'s' if n != 1 else ''} · r runs them")
        bar = self.query_one(ProgressBar)
        if run.total:
            bar.update(total=total, progress=finished)
        else:
            bar.update(total=max(1, n), progress=0)
        parts = [f"batch {batch_size}"]
        if not running and n:
            done = sum(1 for i in range(n) if all(side[i].status == "done" for side in sides))
            parts.insert(0, f"{done}/{n} with results")
        self.query_one("#batch-info", Label).update(" · ".join(parts))
