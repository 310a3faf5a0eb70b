"""Batch view: run every prompt of a file and watch a table fill in.

`BatchScreen(lm=..., params=..., path=...)` is pushed by the app (`open_batch`). Prompts
run through `swamla_tui.batch.job.run_chunks` in a thread worker; the worker only pushes
events into a `ThrottledBuffer`, which applies them to the rows and the table at most
30 times a second (a few cell updates per result, never a table rebuild), so 10,000
prompts do not freeze the screen.

Sampling sliders (Ctrl+B) and the batch size (+ / - / b) apply to batches not yet
started: each batch takes a copy of the parameters when it starts.

The screen's result (`dismiss`) is a prompt to put into the chat input (key c), or None.

A/B (`compare=` a second loaded model, ``--compare B``): every prompt runs on both
models through `swamla_tui.batch.compare.run_compare` (each chunk on A, then on B, with the same
settings and seed); `rows_b` holds B's results beside `rows`, the table and the detail
show both, and the export writes `COMPARE_FIELDS`.

One piece at ~620 lines: what is left are the screen's key actions, which all act on
the same run state (one model's rows, or both models' in an A/B run); the table, the
bottom bar, the input line, the row detail, the help and the run loops
(`swamla_tui.batch.job`, `swamla_tui.batch.compare`) live in their own modules.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from ...base.errors import SwamlaError, one_line
from ...base.params import SamplingParams
from ...base.paths import data_dir
from ...base.safe_text import visible
from ...batch.compare import COMPARE_FIELDS, Side, compare_record, run_compare
from ...batch.job import (
    BatchEvent,
    BatchRow,
    ChunkFailed,
    ChunkStarted,
    PromptFinished,
    RunEnded,
    RunEvent,
    RunProgress,
    apply_event,
    run_chunks,
)
from ...batch.prompts import load_batch_prompts
from ...batch.results import FIELDS, export_results
from ...protocols import BatchModel
from ..notices import LiteralNotify
from ..throttle import ThrottledBuffer
from ..widgets.ask_line import AskLine
from ..widgets.batch_bar import BatchBar
from ..widgets.batch_table import BatchTable
from ..widgets.sampling_sidebar import SamplingSidebar
from .batch_detail import BatchDetailScreen
from .keys_help import KeysHelpScreen, key_rows

__all__ = ["BatchDetailScreen", "BatchRow", "BatchScreen"]

MAX_BATCH_SIZE = 1024
DRAIN_HZ = 10
"""Hand-overs from the run a second: rows change once per prompt, not per token, and the
UI thread shares the GIL with the decode loop (scripts/batch_view_speed.py)."""
IDLE_BAR_EVERY = 0.5
"""Seconds between bar repaints (elapsed time, ETA) while no row changes."""
TABLE_EVERY = 0.5
"""Seconds between table repaints while a run goes on (the first change and the last are
shown at once). Any cell update makes Textual's DataTable render every visible cell
again (its cell cache is keyed on an update counter): a repaint per finished prompt took
a third of the CPU the decode loop needed, on the GIL it shares with it."""


def _clear_result(row: BatchRow) -> None:
    """Forget a row's earlier result when it runs again (the table shows "running" alone)."""
    row.completion, row.error, row.finish_reason = "", None, None
    row.new_tokens = row.seconds = None
    row.truncated = False


class BatchScreen(LiteralNotify, Screen[str | None]):
    """A table of prompts and completions, run in batches in a thread worker."""

    DEFAULT_CSS = """
    BatchScreen #batch-main { height: 1fr; }
    BatchScreen #batch-table { width: 1fr; height: 1fr; }
    BatchScreen #batch-sidebar {
        display: none;
        background: $panel;
        border-left: vkey $panel-lighten-1;
        padding-top: 1;
    }
    BatchScreen #batch-sidebar.-visible { display: block; }
    """

    BINDINGS = [
        Binding("r", "run", "Run", tooltip="Run the prompts without a result (queued, stopped)"),
        Binding("s", "stop", "Stop", show=False, tooltip="Stop the run (finished rows are kept)"),
        Binding(
            "escape",
            "stop_or_back",
            "Stop/Back",
            tooltip="Stop the run; when nothing runs, back to the chat (the palette's "
            "'Batch results' reopens this view)",
        ),
        Binding(
            "ctrl+c",
            "app.interrupt",
            "Stop",
            show=False,
            tooltip="Stop the run (finished rows are kept); when none runs, copy the selection",
        ),
        Binding("ctrl+r", "rerun_row", "Re-run row", tooltip="Run the selected prompt again"),
        Binding("R", "rerun_all", "Re-run all", show=False, tooltip="Run every prompt again"),
        Binding("e", "export", "Export", tooltip="Write results to .jsonl, .csv or .md"),
        Binding("c", "chat", "To chat", tooltip="Close and put the selected prompt in the chat"),
        Binding("o", "open", "Open", tooltip="Open another prompts file"),
        Binding(
            "plus,equals_sign",
            "batch_size(2)",
            "Batch×2",
            show=False,
            tooltip="Double the batch size (applies to the next batch)",
        ),
        Binding(
            "minus",
            "batch_size(0.5)",
            "Batch÷2",
            show=False,
            tooltip="Halve the batch size (applies to the next batch)",
        ),
        Binding("b", "ask_batch_size", "Batch size", tooltip="Type the batch size"),
        Binding("ctrl+b", "toggle_sidebar", "Sliders", tooltip="Sampling sliders (next batches)"),
        Binding("f1,question_mark", "help", "Help", show=False, tooltip="This help"),
        Binding(
            "ctrl+q",
            "app.quit",
            "Quit",
            priority=True,
            tooltip="Quit (during a run: press twice, the results are not saved)",
        ),
    ]

    EXTRA_KEYS: tuple[tuple[str, str], ...] = (
        ("Enter / click", "Show the whole prompt and completion of the row"),
    )
    """Keys that are not bindings of this screen (the table's own)."""

    def __init__(
        self,
        lm: BatchModel | None = None,
        params: SamplingParams | None = None,
        path: str | os.PathLike[str] | None = None,
        *,
        prompts: Sequence[str] | None = None,
        batch_size: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        autostart: bool = True,
        clock: Callable[[], float] = time.monotonic,
        compare: BatchModel | None = None,
        names: tuple[str, str] = ("A", "B"),
        restore: BatchScreen | None = None,
    ) -> None:
        super().__init__()
        self.lm = lm
        self.compare = compare
        """Model B of an A/B run (both answer every prompt), or None."""
        self.names = names
        self.params = params if params is not None else SamplingParams()
        self.path = os.fspath(path) if path else None
        self._given_prompts = list(prompts) if prompts is not None else None
        self._batch_size = batch_size
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self.autostart = autostart
        self.clock = clock

        self.rows: list[BatchRow] = []
        self.rows_b: list[BatchRow] | None = None
        self.load_error: str | None = None
        self.running = False
        self.run = RunProgress()
        self._cancel = threading.Event()
        self.last_export: Path | None = None
        self._quit_asked_at: float | None = None
        self._overwrite: str | None = None
        self._bar_at = 0.0
        self._table_at = 0.0
        self._dirty: dict[int, tuple[BatchRow, bool]] = {}
        """Rows whose cells changed since the table's last repaint (by id: A/B rows)."""
        """The export path waiting for the overwrite question's answer."""
        self._restored = restore is not None
        if restore is not None:  # reopened: the closed view's rows, results and settings
            self.path, self._given_prompts = restore.path, restore._given_prompts
            self.params, self._batch_size = restore.params, restore._batch_size
            self.rows, self.rows_b, self.run = restore.rows, restore.rows_b, restore.run
            self.load_error, self.last_export = restore.load_error, restore.last_export
            self.autostart = False

    # -- settings ------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            try:
                self._batch_size = int(self.lm.default_batch_size()) if self.lm else 16
            except Exception:  # noqa: BLE001 - a default is only a default
                self._batch_size = 16
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = max(1, min(MAX_BATCH_SIZE, int(value)))
        if self.is_mounted:
            self._update_bar()

    @property
    def data_dir(self) -> Path:
        if self._data_dir is not None:
            return self._data_dir
        app_dir = getattr(self.app, "data_dir", None)
        return Path(app_dir) if app_dir is not None else data_dir()

    # -- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="batch-main"):
            yield BatchTable(id="batch-table")
            yield SamplingSidebar(self.params, title="Sampling · next batches", id="batch-sidebar")
        yield BatchBar(id="batch-bar")
        yield AskLine(id="batch-input")
        yield Footer()

    @property
    def table(self) -> BatchTable:
        return self.query_one("#batch-table", BatchTable)

    @property
    def sidebar(self) -> SamplingSidebar:
        return self.query_one("#batch-sidebar", SamplingSidebar)

    @property
    def input(self) -> AskLine:
        return self.query_one("#batch-input", AskLine)

    def on_mount(self) -> None:
        if self.lm is not None:
            self.sidebar.set_max_length(int(self.lm.max_length))
        self._buffer: ThrottledBuffer[tuple[Side, RunEvent]] = ThrottledBuffer(
            self, self._drain, hz=DRAIN_HZ
        )
        self.sub_title = self._title()
        self.table.focus()
        if self._restored:
            self.table.show(self.rows, self.rows_b)
            self._update_bar()
        else:
            self._load(start=self.autostart)

    def on_unmount(self) -> None:
        self._cancel.set()

    def _title(self) -> str:
        ab = f" · A: {visible(self.names[0])} · B: {visible(self.names[1])}" if self.compare else ""
        return f"Batch · {self._source_name()}{ab}"

    def _source_name(self) -> str:
        if self._given_prompts is not None:
            return f"{len(self._given_prompts)} prompts"
        return visible(Path(self.path).name) if self.path else "default prompts"

    def _load(self, *, start: bool) -> None:
        try:
            prompts = (
                list(self._given_prompts)
                if self._given_prompts is not None
                else load_batch_prompts(self.path)
            )
            self.load_error = None
        except SwamlaError as exc:
            prompts = []
            self.load_error = str(exc)
            self.notify(self.load_error, severity="error", timeout=8)
        self._dirty.clear()  # changes of rows no longer shown
        self.rows = [BatchRow(i, p) for i, p in enumerate(prompts)]
        self.rows_b = [BatchRow(i, p) for i, p in enumerate(prompts)] if self.compare else None
        self.table.show(self.rows, self.rows_b)
        self.run = RunProgress()
        self._update_bar()
        if start and self.rows:
            self._start(list(range(len(self.rows))))

    def _update_bar(self) -> None:
        self.query_one(BatchBar).show(
            self.rows,
            self.run,
            now=self.clock(),
            running=self.running,
            stopping=self._cancel.is_set(),
            batch_size=self.batch_size,
            load_error=self.load_error,
            error_style=self.table.style_of("error"),
            rows_b=self.rows_b,
        )

    # -- running -------------------------------------------------------------------------

    def _start(self, order: list[int]) -> None:
        if self.running:
            self.notify("A run is in progress: s stops it.", timeout=3)
            return
        if self.lm is None:
            self.notify("No model is loaded.", severity="error")
            return
        if not order:
            self.notify("Nothing to run: every prompt has a result (Shift+R re-runs all).")
            return
        for i in order:
            for row in self._sides(i):
                row.status, row.error = "queued", None
            self.table.update_row(self.rows[i], status_only=True)
        self._cancel = threading.Event()
        self.running = True
        self._table_at = 0.0  # a run's first change (rows cleared for a re-run) shows at once
        self.run = RunProgress(order, started=self.clock())
        self._buffer.start()
        self._update_bar()
        self.refresh_bindings()
        self._worker(self.lm, self.compare, [r.prompt for r in self.rows], order, self._cancel)

    def _sides(self, index: int) -> list[BatchRow]:
        """Prompt `index`'s rows: A's, and B's in an A/B run."""
        return [self.rows[index]] if self.rows_b is None else [self.rows[index], self.rows_b[index]]

    @work(thread=True, exclusive=True, group="batch", exit_on_error=False)
    def _worker(
        self,
        lm: BatchModel,
        lm_b: BatchModel | None,
        prompts: list[str],
        order: list[int],
        cancel: threading.Event,
    ) -> None:
        """Runs off the UI thread: reads settings, pushes events, touches nothing else."""
        chunk: tuple[Side, tuple[int, ...]] = ("a", ())

        def params() -> SamplingParams:
            return self.params.copy()  # sliders moved later: later batches

        def size() -> int:
            return self.batch_size

        try:
            if lm_b is None:
                events: Iterator[tuple[Side, BatchEvent]] = (
                    ("a", e)
                    for e in run_chunks(
                        lm, prompts, order, params=params, batch_size=size, cancel=cancel
                    )
                )
            else:
                events = run_compare(
                    lm, lm_b, prompts, order, params=params, batch_size=size, cancel=cancel
                )
            for side, event in events:
                if isinstance(event, ChunkStarted):
                    chunk = (side, event.indices)
                self._buffer.push((side, event))
        except BaseException as exc:  # noqa: BLE001 - shown in the rows (a Rust panic too)
            self._buffer.push((chunk[0], ChunkFailed(chunk[1], one_line(exc))))
        finally:
            self._buffer.push(("a", RunEnded()))

    def _drain(self, events: list[tuple[Side, RunEvent]]) -> None:
        for side, event in events:
            rows = self.rows if side == "a" or self.rows_b is None else self.rows_b
            if isinstance(event, ChunkStarted):  # a re-run row loses its old result
                for i in event.indices:
                    _clear_result(rows[i])
                    self._repaint(rows[i], status_only=False)
            changed = apply_event(rows, self.run, event)
            if isinstance(event, RunEnded) and self.rows_b is not None and rows is self.rows:
                changed += apply_event(self.rows_b, RunProgress(self.run.order), event)
            for row in changed:
                self._repaint(row, status_only=isinstance(event, ChunkStarted | RunEnded))
            if isinstance(event, PromptFinished) and rows[event.index].truncated:
                lm = self.lm if rows is self.rows else self.compare
                limit = lm.max_length if lm is not None else "max_length"
                who = f"{self.names[side == 'b']}: " if self.rows_b is not None else ""
                self.notify(
                    f"{who}Prompt {event.index + 1} is longer than the context ({limit} tokens): "
                    "only its last tokens were used.",
                    severity="warning",
                    timeout=5,
                )
            elif isinstance(event, ChunkFailed):
                self.notify(f"Batch failed: {event.message}", severity="error", timeout=8)
            elif isinstance(event, RunEnded):
                self._finish()
        now = time.monotonic()
        if self._dirty and (not self.running or now - self._table_at >= TABLE_EVERY):
            self._table_at = now
            dirty, self._dirty = self._dirty, {}
            for row, status_only in dirty.values():
                self.table.update_row(row, status_only=status_only)
        if events or (self.running and now - self._bar_at >= IDLE_BAR_EVERY):
            self._bar_at = now
            self._update_bar()

    def _repaint(self, row: BatchRow, *, status_only: bool) -> None:
        """Queue `row` for the table's next repaint (see `TABLE_EVERY`)."""
        earlier = self._dirty.get(id(row))
        self._dirty[id(row)] = (row, status_only and (earlier is None or earlier[1]))

    def _finish(self) -> None:
        self.running = False
        self.run.end(self.clock(), stopped=self._cancel.is_set())
        self._buffer.stop()
        self.refresh_bindings()

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self._asking():  # the input line's own keys only (Enter, Esc) in the footer
            return False
        if action == "stop":
            return True if self.running else None
        if action in ("run", "rerun_all", "rerun_row", "open"):
            return None if self.running else True
        return True

    def action_run(self) -> None:
        self._start(
            [r.index for r in self.rows if any(s.status != "done" for s in self._sides(r.index))]
        )

    def action_rerun_all(self) -> None:
        self._start([r.index for r in self.rows])

    def action_rerun_row(self) -> None:
        row = self.table.selected()
        if row is not None:
            self._start([row.index])

    def action_stop(self) -> None:
        if self.running and not self._cancel.is_set():
            self._cancel.set()
            self._update_bar()

    def action_stop_or_back(self) -> None:
        if self.input.mode is not None:
            self.input.hide()
            self.table.focus()
            self.refresh_bindings()
        elif self.running:
            self.action_stop()
        else:
            self.dismiss(None)

    def interrupt(self) -> bool:
        """Ctrl+C (the app asks the screens): stop the run; False when none runs."""
        if not self.running:
            return False
        self.action_stop()
        return True

    def quit_held(self) -> bool:
        """Ctrl+Q during a run: the first press asks (the results are only in this view),
        a second one within 5 s quits. True: hold the quit."""
        if not self.running:
            return False
        now = self.clock()
        if self._quit_asked_at is not None and now - self._quit_asked_at <= 5.0:
            return False
        self._quit_asked_at = now
        self.notify(
            "A batch run is in progress and its results are not saved: Ctrl+Q again quits "
            "(s stops the run, e exports what has finished).",
            severity="warning",
            timeout=5,
        )
        return True

    def action_chat(self) -> None:
        row = self.table.selected()
        if row is None:
            self.notify("No prompt selected.")
            return
        self._cancel.set()
        self.dismiss(row.prompt)

    def action_toggle_sidebar(self) -> None:
        self.sidebar.toggle_class("-visible")

    def action_help(self) -> None:
        self.app.push_screen(KeysHelpScreen("Batch keys", key_rows(self.BINDINGS, self.EXTRA_KEYS)))

    def action_batch_size(self, factor: float) -> None:
        self.batch_size = max(1, int(round(self.batch_size * float(factor))))
        self.notify(f"Batch size {self.batch_size} (from the next batch).", timeout=2)

    def action_ask_batch_size(self) -> None:
        self._ask("batch", "Batch size (applies to the next batch)", str(self.batch_size))

    def action_export(self) -> None:
        if not any(r.has_result for i in range(len(self.rows)) for r in self._sides(i)):
            self.notify("Nothing to export yet: r runs the prompts.")
            return
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        default = self.data_dir / "exports" / f"batch-{stamp}.jsonl"
        self._ask("export", "Export to (.jsonl, .csv or .md)", str(default))

    def action_open(self) -> None:
        self._ask("open", "Prompts file (one prompt a line)", self.path or "")

    # -- the input line ------------------------------------------------------------------

    def _asking(self) -> bool:
        try:
            return self.input.mode is not None
        except NoMatches:  # not composed yet
            return False

    def _ask(self, mode: str, question: str, value: str) -> None:
        self.input.ask(mode, question, value)
        self.refresh_bindings()

    @on(AskLine.Answered)
    def _on_answer(self, event: AskLine.Answered) -> None:
        event.stop()
        self.table.focus()
        self.refresh_bindings()
        mode, value = event.mode, event.value
        if not value and mode != "overwrite":
            return
        if mode == "export":
            target = Path(os.path.expanduser(value))
            if target.exists():  # ask before replacing a file (a earlier export, or not)
                self._overwrite = value
                self._ask("overwrite", f"{visible(target.name)} exists: overwrite? (y/n)", "")
                return
            self.export(value)
        elif mode == "overwrite":
            pending, self._overwrite = self._overwrite, None
            if pending and value.lower() in ("y", "yes"):
                self.export(pending)
            else:
                self.notify("Not exported: the file stays as it was.", timeout=3)
        elif mode == "open":
            if self.running:
                self.notify("Stop the run first (s).")
                return
            try:  # a bad file keeps the rows (and their unexported results)
                load_batch_prompts(value)
            except SwamlaError as exc:
                self.notify(f"{exc} — the current prompts stay.", severity="error", timeout=8)
                return
            self.path, self._given_prompts = value, None
            self.sub_title = self._title()
            self._load(start=True)
        elif mode == "batch":
            try:
                size = int(value)
            except ValueError:
                size = 0
            if size < 1:
                self.notify(f"Not a batch size: {value!r}", severity="error")
                return
            self.batch_size = size

    def export(self, path: str | os.PathLike[str]) -> Path | None:
        """Write the rows that have a result, in input order; returns the file or None."""
        b = self.rows_b
        if b is None:
            records, fields = [r.record() for r in self.rows if r.has_result], FIELDS
        else:
            records = [
                compare_record(r, b[r.index])
                for r in self.rows
                if r.has_result or b[r.index].has_result
            ]
            fields = COMPARE_FIELDS
        try:
            written = export_results(
                records, path, exports_dir=self.data_dir / "exports", fields=fields
            )
        except SwamlaError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return None
        self.last_export = written
        self.notify(f"Exported {len(records)} results to {written}", timeout=5)
        return written

    @on(SamplingSidebar.Changed)
    def _on_sampling_changed(self, event: SamplingSidebar.Changed) -> None:
        # these params are the batch's own copy: keep the change away from the chat
        event.stop()

    # -- detail --------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#batch-table")
    def _on_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        try:
            index = int(event.row_key.value or "")
        except ValueError:
            return
        if 0 <= index < len(self.rows):
            self.show_detail(index)

    def show_detail(self, index: int) -> None:
        row = self.rows[index]

        def closed(result: str | None) -> None:
            if result == "chat":
                self._cancel.set()
                self.dismiss(row.prompt)

        row_b = self.rows_b[index] if self.rows_b is not None else None
        self.app.push_screen(BatchDetailScreen(row, row_b, names=self.names), closed)
