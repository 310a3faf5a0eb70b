"""Batch view: run every prompt of a file and watch a table fill in.

`BatchScreen(lm=..., params=..., path=...)` is pushed by the app (`open_batch`). Prompts
run in batches through `LoadedModel.generate_batch` in a thread worker; the worker only
queues events, and a 30 Hz timer applies them to the table (a few cell updates per
result, never a table rebuild), so 10,000 prompts do not freeze the screen. Rows are
added in chunks after the first paint.

Sampling sliders (Ctrl+B) and the batch size (+ / - / b) apply to batches not yet
started: each batch takes a copy of the parameters when it starts.

The screen's result (`dismiss`) is a prompt to put into the chat input (key c), or None.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, ProgressBar, Static

from ...errors import SwamlaError
from ...export import format_for, write_results
from ...params import SamplingParams
from ..messages import one_line
from ..widgets.sampling_sidebar import SamplingSidebar

__all__ = ["BatchScreen", "BatchDetailScreen", "BatchHelpScreen", "BatchRow", "STATUSES"]

STATUSES = ("queued", "running", "done", "stopped", "error")

REFRESH_HZ = 30
ROW_CHUNK = 500  # rows added to the table per refresh
MAX_BATCH_SIZE = 1024

# (key, label, width, right-aligned)
COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("n", "#", 5, True),
    ("prompt", "prompt", 26, False),
    ("completion", "completion", 42, False),
    ("new_tokens", "new tokens", 10, True),
    ("seconds", "seconds", 7, True),
    ("tok_s", "tok/s", 7, True),
    ("status", "status", 7, False),
)
WIDTHS = {key: width for key, _label, width, _right in COLUMNS}

STATUS_STYLE_VARS = {
    "queued": "text-muted",
    "running": "warning",
    "done": "success",
    "stopped": "text-muted",
    "error": "error",
}


@dataclass
class BatchRow:
    """One prompt and what is known of its result (the table is a view of these)."""

    index: int
    prompt: str
    status: str = "queued"
    completion: str = ""
    new_tokens: int | None = None
    seconds: float | None = None
    finish_reason: str | None = None
    truncated: bool = False
    error: str | None = None

    @property
    def has_result(self) -> bool:
        return self.finish_reason is not None

    @property
    def tokens_per_second(self) -> float | None:
        if self.new_tokens and self.seconds:
            return self.new_tokens / self.seconds
        return None

    def record(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prompt": self.prompt,
            "completion": self.completion,
            "new_tokens": self.new_tokens,
            "seconds": self.seconds,
            "finish_reason": self.finish_reason,
        }


def _clip(text: str, width: int) -> str:
    """First line of `text`, cut to `width` cells with an ellipsis (cheap: no measuring)."""
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    more = len(lines) > 1
    if len(first) > width or (more and len(first) >= width):
        return first[: width - 1] + "…"
    return first + (" ↵" if more and len(first) + 2 <= width else "")


def _lm_of(source: Any) -> Any:
    """`source` is a LoadedModel, a zero-argument getter of one, or None."""
    if source is None or hasattr(source, "generate_batch"):
        return source
    if callable(source):
        return source()
    return source


def _fmt_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}:{sec:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"


class BatchDetailScreen(ModalScreen[str | None]):
    """The whole prompt and completion of one row. Returns "chat" for key c."""

    DEFAULT_CSS = """
    BatchDetailScreen { align: center middle; }
    BatchDetailScreen > Vertical {
        width: 100;
        max-width: 95%;
        height: 85%;
        background: $surface;
        border: thick $primary 60%;
        border-title-color: $primary;
        padding: 0 1;
    }
    BatchDetailScreen .detail--meta { color: $text-muted; height: auto; }
    BatchDetailScreen .detail--heading { color: $primary; text-style: bold; margin-top: 1; }
    BatchDetailScreen VerticalScroll { height: 1fr; }
    BatchDetailScreen .detail--footer { color: $text-muted; height: 1; }
    """

    BINDINGS = [
        Binding("escape,enter,q", "close", "Close"),
        Binding("c", "chat", "Open in chat"),
    ]

    def __init__(self, row: BatchRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        row = self.row
        meta = [row.status]
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
        with Vertical() as box:
            box.border_title = f"Prompt {row.index + 1}"
            yield Static(Text(" · ".join(meta)), classes="detail--meta")
            with VerticalScroll():
                yield Static("Prompt", classes="detail--heading")
                yield Static(Text(row.prompt), id="detail-prompt")
                yield Static("Completion", classes="detail--heading")
                body = row.completion
                if row.error:
                    body = f"error: {row.error}"
                elif not body and not row.has_result:
                    body = "(not run yet)"
                yield Static(Text(body), id="detail-completion")
            yield Static(
                "Esc / Enter: close · c: open the prompt in chat", classes="detail--footer"
            )

    def action_close(self) -> None:
        self.dismiss(None)

    def action_chat(self) -> None:
        self.dismiss("chat")


class BatchHelpScreen(ModalScreen[None]):
    """The batch view's keys (built from `BatchScreen.BINDINGS`)."""

    DEFAULT_CSS = """
    BatchHelpScreen { align: center middle; }
    BatchHelpScreen > Vertical {
        width: 72;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        background: $surface;
        border: thick $primary 60%;
        border-title-color: $primary;
        padding: 0 1;
    }
    BatchHelpScreen VerticalScroll { height: auto; max-height: 30; }
    BatchHelpScreen .help--footer { color: $text-muted; height: 1; }
    """

    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close")]

    def __init__(self, keys: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = list(keys)

    def compose(self) -> ComposeResult:
        table = Table(expand=True, box=None, padding=(0, 1), show_header=False)
        table.add_column("Key", style="bold", no_wrap=True)
        table.add_column("Action")
        for key, what in self.keys:
            table.add_row(key, what)
        with Vertical() as box:
            box.border_title = "Batch keys"
            with VerticalScroll():
                yield Static(table)
            yield Static("Esc / q / F1: close", classes="help--footer")

    def action_close(self) -> None:
        self.dismiss(None)


class BatchScreen(Screen[str | None]):
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
    BatchScreen #batch-bar { height: 1; padding: 0 1; background: $panel; }
    BatchScreen #batch-count { width: auto; min-width: 24; padding-right: 2; }
    BatchScreen #batch-progress { width: 1fr; }
    BatchScreen #batch-progress Bar { width: 1fr; }
    BatchScreen #batch-info { width: auto; color: $text-muted; padding-left: 2; }
    BatchScreen #batch-input { display: none; dock: bottom; margin: 0 1; }
    BatchScreen #batch-input.-visible { display: block; }
    """

    BINDINGS = [
        Binding("r", "run", "Run", tooltip="Run the prompts that have no result yet"),
        Binding("s", "stop", "Stop", tooltip="Stop the run (finished rows are kept)"),
        Binding("escape", "stop_or_back", "Stop/Back", show=False),
        Binding("ctrl+r", "rerun_row", "Re-run row", tooltip="Run the selected prompt again"),
        Binding("R", "rerun_all", "Re-run all", tooltip="Run every prompt again"),
        Binding("e", "export", "Export", tooltip="Write results to .jsonl, .csv or .md"),
        Binding("c", "chat", "To chat", tooltip="Close and put the selected prompt in the chat"),
        Binding("o", "open", "Open", tooltip="Open another prompts file"),
        Binding("plus,equals_sign", "batch_size(2)", "Batch×2", show=False),
        Binding("minus", "batch_size(0.5)", "Batch÷2", show=False),
        Binding("b", "ask_batch_size", "Batch size", tooltip="Type the batch size"),
        Binding("ctrl+b", "toggle_sidebar", "Sliders", tooltip="Sampling sliders (next batches)"),
        Binding("f1,question_mark", "help", "Help", show=False),
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
    ]

    HELP_KEYS: tuple[tuple[str, str], ...] = (
        ("r", "Run the prompts without a result (queued, stopped, error)"),
        ("s", "Stop the run (rows in progress keep their partial completion)"),
        ("Esc", "Stop the run; when nothing runs, close the batch view"),
        ("Enter / click", "Show the whole prompt and completion of the row"),
        ("Ctrl+R", "Re-run the selected row"),
        ("Shift+R", "Re-run every row"),
        ("e", "Export results (.jsonl, .csv, .md by the file's extension)"),
        ("c", "Close and put the selected prompt into the chat input"),
        ("o", "Open another prompts file"),
        ("+ / -", "Double / halve the batch size (applies to the next batch)"),
        ("b", "Type the batch size"),
        ("Ctrl+B", "Show / hide the sampling sliders (apply to the next batch)"),
        ("F1 or ?", "This help"),
        ("Ctrl+Q", "Quit"),
    )

    def __init__(
        self,
        lm: Any = None,
        params: SamplingParams | None = None,
        path: str | os.PathLike[str] | None = None,
        *,
        prompts: Sequence[str] | None = None,
        batch_size: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        autostart: bool = True,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._lm_source = lm
        self.params = params if params is not None else SamplingParams()
        self.path = os.fspath(path) if path else None
        self._given_prompts = list(prompts) if prompts is not None else None
        self._batch_size = batch_size
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self.autostart = autostart
        self.clock = clock

        self.rows: list[BatchRow] = []
        self.load_error: str | None = None
        self.running = False
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._events: list[tuple[Any, ...]] = []
        self._added = 0
        self._fill_generation = 0
        self._run_total = 0
        self._run_done = 0
        self._run_started = 0.0
        self._run_elapsed: float | None = None
        self._run_stopped = False
        self._input_mode: str | None = None
        self._styles: dict[str, str] = {}
        self.last_export: Path | None = None

    # -- model and prompts ----------------------------------------------------------------

    @property
    def lm(self) -> Any:
        return _lm_of(self._lm_source)

    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            lm = self.lm
            try:
                self._batch_size = int(lm.default_batch_size()) if lm is not None else 16
            except Exception:  # noqa: BLE001
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
        if app_dir is not None:
            return Path(app_dir)
        from ..settings import resolve_data_dir

        return resolve_data_dir()

    def _read_prompts(self) -> list[str]:
        from ...headless import load_batch_prompts

        if self._given_prompts is not None:
            return list(self._given_prompts)
        return load_batch_prompts(self.path)

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="batch-main"):
            yield DataTable(id="batch-table", cursor_type="row", zebra_stripes=True)
            yield SamplingSidebar(
                self.params,
                title="Sampling · next batches",
                id="batch-sidebar",
            )
        with Horizontal(id="batch-bar"):
            yield Label("", id="batch-count")
            yield ProgressBar(id="batch-progress", show_eta=False, show_percentage=True)
            yield Label("", id="batch-info")
        yield Input(id="batch-input")
        yield Footer()

    @property
    def table(self) -> DataTable:
        return self.query_one("#batch-table", DataTable)

    @property
    def progress_bar(self) -> ProgressBar:
        return self.query_one("#batch-progress", ProgressBar)

    @property
    def sidebar(self) -> SamplingSidebar:
        return self.query_one("#batch-sidebar", SamplingSidebar)

    @property
    def input(self) -> Input:
        return self.query_one("#batch-input", Input)

    def on_mount(self) -> None:
        variables = self.app.theme_variables
        self._styles = {s: variables.get(v, "") for s, v in STATUS_STYLE_VARS.items()}
        table = self.table
        for key, label, width, right in COLUMNS:
            table.add_column(
                Text(label, justify="right" if right else "left"), key=key, width=width
            )
        lm = self.lm
        if lm is not None and getattr(lm, "max_length", None):
            self.sidebar.set_max_length(int(lm.max_length))
        self._timer = self.set_interval(1 / REFRESH_HZ, self._drain, pause=True)
        self.sub_title = f"Batch · {self._source_name()}"
        table.focus()
        self._load(start=self.autostart)

    def on_unmount(self) -> None:
        self._cancel.set()

    def _source_name(self) -> str:
        if self._given_prompts is not None:
            return f"{len(self._given_prompts)} prompts"
        return Path(self.path).name if self.path else "default prompts"

    def _load(self, *, start: bool) -> None:
        try:
            prompts = self._read_prompts()
            self.load_error = None
        except SwamlaError as exc:
            prompts = []
            self.load_error = str(exc)
            self.notify(self.load_error, severity="error", timeout=8)
        self.rows = [BatchRow(i, p) for i, p in enumerate(prompts)]
        self.table.clear()
        self._added = 0
        self._fill_generation += 1
        self._run_total = self._run_done = 0
        self._run_elapsed = None
        self._fill_rows(self._fill_generation)
        self._update_bar()
        if start and self.rows:
            self._start(list(range(len(self.rows))))

    def _fill_rows(self, generation: int) -> None:
        """Add the next chunk of rows; the rest follow after the next refresh."""
        if generation != self._fill_generation:
            return  # another file was opened meanwhile
        end = min(self._added + ROW_CHUNK, len(self.rows))
        table = self.table
        for row in self.rows[self._added : end]:
            table.add_row(*self._cells(row), key=str(row.index))
        self._added = end
        if self._added < len(self.rows):
            self.call_after_refresh(self._fill_rows, generation)

    # -- cells ----------------------------------------------------------------------------

    def _status_text(self, row: BatchRow) -> Text:
        label = row.status
        if row.status == "done" and row.truncated:
            label = "done✂"
        return Text(label, style=self._styles.get(row.status, ""))

    def _number_cells(self, row: BatchRow) -> tuple[Text, Text, Text]:
        tps = row.tokens_per_second
        return (
            Text("" if row.new_tokens is None else str(row.new_tokens), justify="right"),
            Text("" if row.seconds is None else f"{row.seconds:.2f}", justify="right"),
            Text("" if tps is None else f"{tps:.1f}", justify="right"),
        )

    def _completion_text(self, row: BatchRow) -> Text:
        if row.error:
            return Text(_clip(row.error, WIDTHS["completion"]), style=self._styles["error"])
        if row.has_result and not row.completion.strip():
            return Text("(empty)", style=self._styles.get("queued", ""))
        return Text(_clip(row.completion, WIDTHS["completion"]))

    def _cells(self, row: BatchRow) -> list[Text]:
        return [
            Text(str(row.index + 1), justify="right"),
            Text(_clip(row.prompt, WIDTHS["prompt"])),
            self._completion_text(row),
            *self._number_cells(row),
            self._status_text(row),
        ]

    def _refresh_row(self, row: BatchRow, *, status_only: bool = False) -> None:
        if row.index >= self._added:
            return  # not in the table yet: it is added with its current data
        table, key = self.table, str(row.index)
        table.update_cell(key, "status", self._status_text(row))
        if status_only:
            return
        table.update_cell(key, "completion", self._completion_text(row))
        new, secs, tps = self._number_cells(row)
        table.update_cell(key, "new_tokens", new)
        table.update_cell(key, "seconds", secs)
        table.update_cell(key, "tok_s", tps)

    def _update_bar(self) -> None:
        count = self.query_one("#batch-count", Label)
        info = self.query_one("#batch-info", Label)
        bar = self.progress_bar
        n = len(self.rows)
        if self.load_error:
            count.update(Text("No prompts: o opens a file", style=self._styles.get("error", "")))
        elif self.running:
            elapsed = self.clock() - self._run_started
            text = f"{self._run_done}/{self._run_total} · {_fmt_duration(elapsed)}"
            if 0 < self._run_done < self._run_total:
                eta = elapsed / self._run_done * (self._run_total - self._run_done)
                text += f" · ETA {_fmt_duration(eta)}"
            if self._cancel.is_set():
                text += " · stopping…"
            count.update(text)
        elif self._run_total:
            verb = "stopped" if self._run_stopped else "done"
            took = _fmt_duration(self._run_elapsed or 0.0)
            count.update(f"{self._run_done}/{self._run_total} {verb} in {took}")
        else:
            count.update(f"{n} prompt{'s' if n != 1 else ''} · r runs them")
        if self._run_total:
            bar.update(total=self._run_total, progress=self._run_done)
        else:
            bar.update(total=max(1, n), progress=0)
        done = sum(1 for r in self.rows if r.status == "done") if not self.running else None
        parts = [f"batch {self.batch_size}"]
        if done is not None and n:
            parts.insert(0, f"{done}/{n} with results")
        info.update(" · ".join(parts))

    # -- running --------------------------------------------------------------------------

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
            row = self.rows[i]
            row.status = "queued"
            row.error = None
            self._refresh_row(row, status_only=True)
        self._cancel = threading.Event()
        self.running = True
        self._run_stopped = False
        self._run_total = len(order)
        self._run_done = 0
        self._run_started = self.clock()
        self._run_elapsed = None
        self._timer.resume()
        self._update_bar()
        self.refresh_bindings()
        self._worker(order, self._cancel)

    def _post(self, *event: Any) -> None:
        with self._lock:
            self._events.append(event)

    @work(thread=True, exclusive=True, group="batch", exit_on_error=False)
    def _worker(self, order: list[int], cancel: threading.Event) -> None:
        lm = self.lm
        pos = 0
        chunk: list[int] = []
        try:
            while pos < len(order) and not cancel.is_set():
                size = self.batch_size  # read per batch: changes apply to the next one
                chunk = order[pos : pos + size]
                pos += len(chunk)
                params = self.params.copy()  # sliders moved later affect later batches
                self._post("running", chunk)
                texts = [self.rows[i].prompt for i in chunk]
                for res in lm.generate_batch(texts, params, batch_size=len(chunk), cancel=cancel):
                    self._post("result", chunk[res.index], res)
        except Exception as exc:  # noqa: BLE001 - shown in the rows, the screen stays up
            self._post("error", chunk, one_line(exc))
        finally:
            self._post("finished", order[pos:])

    def _drain(self) -> None:
        with self._lock:
            events, self._events = self._events, []
        if not events:
            if self.running:
                self._update_bar()
            return
        for event in events:
            kind = event[0]
            if kind == "running":
                for i in event[1]:
                    row = self.rows[i]
                    row.status = "running"
                    self._refresh_row(row, status_only=True)
            elif kind == "result":
                self._apply_result(self.rows[event[1]], event[2])
            elif kind == "error":
                message = event[2]
                for i in event[1]:
                    row = self.rows[i]
                    if row.status in ("queued", "running"):
                        row.status, row.error = "error", message
                        self._run_done += 1
                        self._refresh_row(row)
                self.notify(f"Batch failed: {message}", severity="error", timeout=8)
            elif kind == "finished":
                for i in event[1]:  # never started: the run was stopped
                    row = self.rows[i]
                    if row.status == "queued":
                        row.status = "stopped"
                        self._refresh_row(row, status_only=True)
                self._finish()
        self._update_bar()

    def _apply_result(self, row: BatchRow, res: Any) -> None:
        row.completion = res.completion
        row.new_tokens = int(res.new_tokens)
        row.seconds = float(res.seconds)
        row.finish_reason = res.finish_reason
        row.truncated = bool(getattr(res, "truncated", False))
        row.status = "stopped" if res.finish_reason == "cancelled" else "done"
        self._run_done += 1
        self._refresh_row(row)
        if row.truncated:
            limit = getattr(self.lm, "max_length", "max_length")
            self.notify(
                f"Prompt {row.index + 1} is longer than the context ({limit} tokens): "
                "only its last tokens were used.",
                severity="warning",
                timeout=5,
            )

    def _finish(self) -> None:
        self.running = False
        self._run_stopped = self._cancel.is_set()
        self._run_elapsed = self.clock() - self._run_started
        self._timer.pause()
        self.refresh_bindings()

    # -- actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return True if self.running else None
        if action in ("run", "rerun_all", "rerun_row", "open"):
            return None if self.running else True
        return True

    def action_run(self) -> None:
        self._start([r.index for r in self.rows if r.status != "done"])

    def action_rerun_all(self) -> None:
        self._start([r.index for r in self.rows])

    def _selected(self) -> BatchRow | None:
        table = self.table
        if not self.rows or table.row_count == 0:
            return None
        index = table.cursor_row
        if 0 <= index < min(self._added, len(self.rows)):
            return self.rows[index]
        return None

    def action_rerun_row(self) -> None:
        row = self._selected()
        if row is not None:
            self._start([row.index])

    def action_stop(self) -> None:
        if self.running and not self._cancel.is_set():
            self._cancel.set()
            self._update_bar()

    def action_stop_or_back(self) -> None:
        if self._input_mode is not None:
            self._hide_input()
        elif self.running:
            self.action_stop()
        else:
            self.dismiss(None)

    def action_chat(self) -> None:
        row = self._selected()
        if row is None:
            self.notify("No prompt selected.")
            return
        self._cancel.set()
        self.dismiss(row.prompt)

    def action_toggle_sidebar(self) -> None:
        self.sidebar.toggle_class("-visible")

    def action_help(self) -> None:
        self.app.push_screen(BatchHelpScreen(self.HELP_KEYS))

    def action_batch_size(self, factor: float) -> None:
        self.batch_size = max(1, int(round(self.batch_size * float(factor))))
        self.notify(f"Batch size {self.batch_size} (from the next batch).", timeout=2)

    def action_ask_batch_size(self) -> None:
        self._ask("batch", "Batch size (applies to the next batch)", str(self.batch_size))

    def action_export(self) -> None:
        if not any(r.has_result for r in self.rows):
            self.notify("Nothing to export yet: r runs the prompts.")
            return
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        default = self.data_dir / "exports" / f"batch-{stamp}.jsonl"
        self._ask("export", "Export to (.jsonl, .csv or .md)", str(default))

    def action_open(self) -> None:
        self._ask("open", "Prompts file (one prompt a line)", self.path or "")

    # -- the input line -------------------------------------------------------------------

    def _ask(self, mode: str, placeholder: str, value: str) -> None:
        self._input_mode = mode
        field = self.input
        field.placeholder = placeholder
        field.border_title = placeholder
        field.value = value
        field.cursor_position = len(value)
        field.add_class("-visible")
        field.focus()

    def _hide_input(self) -> None:
        self._input_mode = None
        self.input.remove_class("-visible")
        self.table.focus()

    @on(Input.Submitted, "#batch-input")
    def _on_input(self, event: Input.Submitted) -> None:
        event.stop()
        mode, value = self._input_mode, event.value.strip()
        self._hide_input()
        if not value:
            return
        if mode == "export":
            self.export(value)
        elif mode == "open":
            if self.running:
                self.notify("Stop the run first (s).")
                return
            self.path, self._given_prompts = value, None
            self.sub_title = f"Batch · {self._source_name()}"
            self._load(start=True)
        elif mode == "batch":
            try:
                size = int(value)
                if size < 1:
                    raise ValueError
            except ValueError:
                self.notify(f"Not a batch size: {value!r}", severity="error")
                return
            self.batch_size = size

    def export(self, path: str | os.PathLike[str]) -> Path | None:
        """Write the rows that have a result, in input order; returns the file or None."""
        target = Path(os.path.expanduser(os.fspath(path)))
        records = [r.record() for r in self.rows if r.has_result]
        try:
            format_for(target)
            if target.parent == self.data_dir / "exports":
                target.parent.mkdir(parents=True, exist_ok=True)
            written = write_results(records, target)
        except (SwamlaError, OSError) as exc:
            self.notify(one_line(exc), severity="error", timeout=8)
            return None
        self.last_export = written
        self.notify(f"Exported {len(records)} results to {written}", timeout=5)
        return written

    @on(SamplingSidebar.Changed)
    def _on_sampling_changed(self, event: SamplingSidebar.Changed) -> None:
        # these params are the batch's own copy: keep the change away from the chat
        event.stop()

    # -- detail ---------------------------------------------------------------------------

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

        self.app.push_screen(BatchDetailScreen(row), closed)
