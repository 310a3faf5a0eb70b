"""Batch view (issue 12 §5, §6): the batch size flag, counts after a stop, re-runs, 80 columns."""

from __future__ import annotations

from textual.widgets import ProgressBar

from swamla_tui.ui.screens.batch import BatchScreen
from swamla_tui.ui.widgets.batch_bar import BatchBar
from swamla_tui.ui.widgets.batch_table import COLUMNS

from .pilot import (
    GateBatchLM,
    loaded_app,
    make_app,
    send,
    wait_for,
    wait_loaded,
)

SIZE = (120, 36)


def bar_text(screen: BatchScreen) -> str:
    return str(screen.query_one(BatchBar).query_one("#batch-count").render())


async def open_from_chat(pilot, app, tmp_path, prompts: list[str]) -> BatchScreen:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    await send(pilot, f"/batch {path}")
    await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
    screen = app.screen
    assert isinstance(screen, BatchScreen)
    return screen


async def test_batch_size_flag_is_used_by_the_batch_command(tmp_path):
    lm = GateBatchLM()  # its own default is 4
    async with loaded_app(lm, tmp_path, batch_size=2) as (app, pilot):
        screen = await open_from_chat(pilot, app, tmp_path, [f"p{i}" for i in range(5)])
        assert screen.batch_size == 2
        lm.release(5)
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 5)
        assert lm.batch_sizes == [2, 2, 1]


async def test_stop_counts_finished_rows_only_and_rerun_clears_old_results(tmp_path):
    lm = GateBatchLM()
    async with loaded_app(lm, tmp_path, batch_size=3) as (app, pilot):
        screen = await open_from_chat(pilot, app, tmp_path, [f"p{i}" for i in range(6)])
        lm.release(2)
        await wait_for(pilot, lambda: sum(r.status == "done" for r in screen.rows) == 2)
        await pilot.press("s")
        await wait_for(pilot, lambda: not screen.running)
        await pilot.pause(0.1)
        assert [r.status for r in screen.rows] == ["done", "done"] + ["stopped"] * 4
        assert bar_text(screen).startswith("2/6 stopped")
        progress = screen.query_one("#batch-progress", ProgressBar)
        assert (progress.progress, progress.total) == (2, 6)

        # re-run the first row: while it runs, its old completion is gone
        screen.table.move_cursor(row=0)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.rows[0].status == "running")
        assert screen.rows[0].completion == "" and screen.rows[0].new_tokens is None
        cell = screen.table.get_cell("0", "completion")
        assert cell.plain == ""
        lm.release(1)
        await wait_for(pilot, lambda: not screen.running)
        assert screen.rows[0].completion == "answer to p0"


async def test_status_column_is_visible_at_80_columns(tmp_path):
    lm = GateBatchLM()
    app = make_app(lm, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        screen = await open_from_chat(pilot, app, tmp_path, ["one"])
        keys = [key for key, *_ in COLUMNS]
        before = sum(width + 2 for key, _l, width, _r in COLUMNS[: keys.index("status") + 1])
        assert before <= 80 - 2
        lm.release(1)
        await wait_for(pilot, lambda: not screen.running)
        await pilot.pause(0.1)
        line = "".join(seg.text for seg in screen.table.render_line(1))
        assert "done" in line
