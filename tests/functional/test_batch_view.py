"""Pilot tests of the batch view (`BatchScreen`) with the reference fixture model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from swamla_tui.base.params import BatchOptions, SamplingParams
from swamla_tui.batch.job import PromptFinished, RunProgress
from swamla_tui.protocols import BatchModel, BatchOutcome
from swamla_tui.ui.screens.batch import BatchDetailScreen, BatchScreen
from tests.support.batch import BatchTestApp, FixedTimeLM, WrappedLM
from tests.support.fakes import Outcome

from .pilot import batch_mode_app

if TYPE_CHECKING:
    from typing_extensions import Unpack

SIZE = (120, 36)
PROMPTS = [
    "Once upon a time, in a land far away,",
    "What is a list in Python?",
    "You: Hello there, how are you today?",
    "The quick brown fox",
    "Numbers 0123456789",
    "science and magic",
]


class GatedLM(WrappedLM):
    """Yields nothing until released, so a test can stop a run in progress."""

    max_length = 128

    def __init__(self, lm: Any) -> None:
        super().__init__(lm)
        self.started = threading.Event()
        self.calls: list[list[str]] = []

    def generate_batch(
        self,
        texts: Sequence[str],
        params: SamplingParams | None = None,
        **options: Unpack[BatchOptions],
    ) -> Iterator[BatchOutcome]:
        cancel = options.get("cancel")
        assert cancel is not None  # the batch view always hands over its stop event
        batch_size = options.get("batch_size")
        self.calls.append(list(texts))
        self.started.set()
        while not cancel.is_set():
            time.sleep(0.01)
        yield from self.lm.generate_batch(texts, params, batch_size=batch_size, cancel=cancel)


async def wait_for(pilot, predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; {describe(pilot.app)}")
        await pilot.pause(0.02)


def describe(app) -> str:
    screen = getattr(app, "batch", None) or app.screen
    if not isinstance(screen, BatchScreen):
        return f"screen {app.screen!r}"
    rows = [(r.status, r.error) for r in screen.rows]
    workers = [(w.name, w.state.name, repr(w.error)) for w in app.workers]
    return f"running={screen.running} done={screen.run.done} rows={rows} workers={workers}"


def greedy(**kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_new_tokens=kw.pop("max_new_tokens", 8), **kw)


def statuses(screen: BatchScreen) -> list[str]:
    return [r.status for r in screen.rows]


def cell(screen: BatchScreen, index: int, column: str) -> str:
    return screen.table.get_cell(str(index), column).plain


async def test_rows_fill_and_detail_opens(fixture_lm, tmp_path):
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    app = BatchTestApp(
        lambda: BatchScreen(lm=fixture_lm, params=greedy(), path=str(prompts_file), batch_size=4)
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = app.batch
        assert screen is not None
        await wait_for(pilot, lambda: not screen.running and screen.run.total)
        await pilot.pause()
        assert statuses(screen) == ["done"] * len(PROMPTS)
        assert screen.table.row_count == len(PROMPTS)
        expected = {r.index: r for r in fixture_lm.generate_batch(PROMPTS, greedy())}
        for row in screen.rows:
            assert row.completion == expected[row.index].completion
            assert row.new_tokens == expected[row.index].new_tokens
            assert cell(screen, row.index, "status") == "done"
            assert cell(screen, row.index, "new_tokens") == str(row.new_tokens)
            assert cell(screen, row.index, "prompt") == PROMPTS[row.index][:25] + (
                "…" if len(PROMPTS[row.index]) > 26 else PROMPTS[row.index][25:]
            )
        assert "6/6 done" in str(screen.query_one("#batch-count").render())

        # Enter on the third row: the whole prompt and completion
        screen.table.move_cursor(row=2)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchDetailScreen))
        detail = app.screen
        assert isinstance(detail, BatchDetailScreen)
        assert detail.row.index == 2
        assert str(detail.query_one("#detail-prompt").render()) == PROMPTS[2]
        assert str(detail.query_one("#detail-completion").render()).strip() == (
            screen.rows[2].completion.strip()
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)

        # c: back to the chat with the selected prompt
        await pilot.press("c")
        await wait_for(pilot, lambda: app.dismissed)
        assert app.dismissed == [PROMPTS[2]]


async def test_stop_keeps_finished_rows_and_run_resumes(fixture_lm):
    gated = GatedLM(fixture_lm)
    app = BatchTestApp(lambda: BatchScreen(lm=gated, params=greedy(), prompts=PROMPTS))
    async with app.run_test(size=SIZE) as pilot:
        screen = app.batch
        assert screen is not None
        await wait_for(pilot, lambda: gated.started.is_set())
        await wait_for(pilot, lambda: statuses(screen)[:2] == ["running", "running"])
        assert statuses(screen)[2:] == ["queued"] * 4
        assert cell(screen, 0, "status") == "running"
        await pilot.press("s")
        await wait_for(pilot, lambda: not screen.running)
        assert statuses(screen) == ["stopped"] * len(PROMPTS)
        assert len(gated.calls) == 1  # no batch started after the stop
        assert "stopped" in str(screen.query_one("#batch-count").render())

        # r runs the rows without a result, on the real model now
        screen.lm = fixture_lm
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 6)
        assert statuses(screen) == ["done"] * len(PROMPTS)

        # escape, when nothing runs, closes the view without a prompt
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.dismissed)
        assert app.dismissed == [None]


async def test_batch_size_and_params_apply_to_next_batch(fixture_lm):
    calls: list[tuple[int, int]] = []

    class Recording(FixedTimeLM):
        def generate_batch(
            self,
            texts: Sequence[str],
            params: SamplingParams | None = None,
            **options: Unpack[BatchOptions],
        ) -> Iterator[Outcome]:
            assert params is not None
            calls.append((len(texts), params.max_new_tokens))
            yield from super().generate_batch(texts, params, **options)

    app = BatchTestApp(
        lambda: BatchScreen(
            lm=Recording(fixture_lm), params=greedy(), prompts=PROMPTS, autostart=False
        )
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = app.batch
        assert screen is not None
        assert screen.batch_size == 4
        assert statuses(screen) == ["queued"] * 6
        await pilot.press("minus")
        assert screen.batch_size == 2
        await pilot.press("b")
        assert screen.input.has_focus
        screen.input.value = ""
        await pilot.press("3", "enter")
        assert screen.batch_size == 3
        screen.params.max_new_tokens = 4
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 6)
        assert calls == [(3, 4), (3, 4)]
        assert all(r.new_tokens is not None and r.new_tokens <= 4 for r in screen.rows)

        # ctrl+r re-runs the selected row only; shift+r all of them
        calls.clear()
        screen.table.move_cursor(row=4)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not screen.running and calls)
        assert calls == [(1, 4)]
        calls.clear()
        await pilot.press("R")
        await wait_for(pilot, lambda: not screen.running and len(calls) == 2)
        assert statuses(screen) == ["done"] * 6


async def test_export_writes_input_order(fixture_lm, tmp_path):
    app = BatchTestApp(
        lambda: BatchScreen(
            lm=FixedTimeLM(fixture_lm), params=greedy(), prompts=PROMPTS, data_dir=tmp_path
        )
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = app.batch
        assert screen is not None
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 6)
        await pilot.press("e")
        assert screen.input.has_focus
        assert screen.input.value.startswith(str(tmp_path / "exports" / "batch-"))
        await pilot.press("enter")
        written = screen.last_export
        assert written is not None and written.parent == tmp_path / "exports"
        records = [json.loads(line) for line in written.read_text("utf-8").splitlines()]
        assert [r["prompt"] for r in records] == PROMPTS
        assert {r["finish_reason"] for r in records} <= {"length", "eos", "stop"}
        md = screen.export(tmp_path / "out.md")
        assert md is not None and md.read_text("utf-8").startswith("| # | prompt")
        assert screen.export(tmp_path / "out.txt") is None  # unknown format: a notice


async def test_many_prompts_do_not_block(fixture_lm):
    prompts = [f"prompt number {i}" for i in range(10_000)]

    class Idle:
        max_length = 128

        def default_batch_size(self):
            return 16

    # never started: a model with only what the view reads before a run
    idle = cast(BatchModel, Idle())
    app = BatchTestApp(lambda: BatchScreen(lm=idle, prompts=prompts, autostart=False))
    async with app.run_test(size=SIZE) as pilot:
        screen = app.batch
        assert screen is not None
        await pilot.pause()
        assert screen.table.row_count < 10_000  # rows arrive in chunks
        # no wall-clock bound (a shared machine's timing is noise): all rows arrive
        await wait_for(pilot, lambda: screen.table.row_count == 10_000, timeout=300)
        # results for far rows cost a few cell updates each
        t1 = time.perf_counter()
        for i in range(0, 10_000, 10):
            screen._buffer.push(("a", PromptFinished(i, _result(i))))
        screen.running = True
        screen.run = RunProgress(list(range(0, 10_000, 10)))
        screen._buffer.flush()
        screen.running = False
        assert time.perf_counter() - t1 < 5
        assert screen.rows[9990].status == "done"
        assert cell(screen, 9990, "completion") == "out 9990"


def _result(i: int):
    from swamla_tui.runtime.load import BatchResult

    return BatchResult(i, f"prompt number {i}", f"out {i}", 3, 0.1, "length")


def test_finished_table_snapshot(snap_compare, fixture_lm):
    app = BatchTestApp(
        lambda: BatchScreen(
            lm=FixedTimeLM(fixture_lm),
            params=greedy(),
            prompts=PROMPTS,
            clock=lambda: 0.0,
        )
    )

    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: app.batch is not None and app.batch.run.done == 6)
        await wait_for(pilot, lambda: app.batch is not None and not app.batch.running)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_real_app_opens_batch_view(fixture_lm, tmp_path):
    app = batch_mode_app(fixture_lm, tmp_path, PROMPTS[:3], params=greedy())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        screen = app.screen
        assert isinstance(screen, BatchScreen)
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 3)
        assert statuses(screen) == ["done"] * 3
        assert screen.batch_size == fixture_lm.default_batch_size()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, BatchScreen))


async def test_open_another_file_while_rows_fill(fixture_lm, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("one\ntwo\nthree\n", encoding="utf-8")
    many = [f"p{i}" for i in range(3000)]
    app = BatchTestApp(
        lambda: BatchScreen(
            lm=FixedTimeLM(fixture_lm), params=greedy(), prompts=many, autostart=False
        )
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = app.batch
        assert screen is not None
        assert screen.table.row_count < 3000  # still filling
        await pilot.press("o")
        assert screen.input.has_focus
        screen.input.value = str(small)
        await pilot.press("enter")
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 3)
        await pilot.pause(0.2)
        assert screen.table.row_count == 3
        assert [r.prompt for r in screen.rows] == ["one", "two", "three"]
        assert statuses(screen) == ["done"] * 3
        assert screen.sub_title == "Batch · small.txt"

        # a missing file: an error, the rows and their results stay (issue 12 §5)
        await pilot.press("o")
        screen.input.value = str(tmp_path / "missing.txt")
        await pilot.press("enter")
        await pilot.pause()
        assert [r.prompt for r in screen.rows] == ["one", "two", "three"]
        assert statuses(screen) == ["done"] * 3 and screen.load_error is None
        assert screen.table.row_count == 3 and screen.sub_title == "Batch · small.txt"
        assert any("no such file" in n.message for n in app._notifications)


async def test_sliders_change_the_batch_params_only(fixture_lm):
    chat_params = greedy()
    app = BatchTestApp(
        lambda: BatchScreen(
            lm=fixture_lm, params=chat_params.copy(), prompts=PROMPTS, autostart=False
        )
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = app.batch
        assert screen is not None
        assert not screen.sidebar.display or not screen.sidebar.has_class("-visible")
        await pilot.press("ctrl+b")
        assert screen.sidebar.has_class("-visible")
        screen.sidebar.slider("max_new_tokens").focus()
        await pilot.press("left")
        await pilot.pause()
        assert screen.params.max_new_tokens == 7
        assert chat_params.max_new_tokens == 8
        assert app.sampling_events == []


async def test_real_app_batch_row_opens_in_chat(fixture_lm, tmp_path):
    """Key `c` on a row: the batch view closes and the prompt waits in the chat input."""
    app = batch_mode_app(fixture_lm, tmp_path, PROMPTS[:2], params=greedy())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        screen = app.screen
        assert isinstance(screen, BatchScreen)
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 2)
        await pilot.press("c")
        await wait_for(pilot, lambda: not isinstance(app.screen, BatchScreen))
        assert app.chat_screen.prompt_input.text == PROMPTS[0]


class GatedModel(GatedLM):
    """`GatedLM` that is the whole model to the app (chat parts from the real one)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lm, name)


def _footer_keys(screen: BatchScreen) -> dict[str, str]:
    return {b.key: b.description for _, b, _, _ in screen.active_bindings.values() if b.show}


async def test_ctrl_c_stops_the_run_esc_is_listed_and_results_reopen(fixture_lm, tmp_path):
    """Issue 22 item 9: Ctrl+C stops the run (not the chat's copy hint); Esc is in the
    footer; after Esc the palette's 'Batch results' reopens the rows as they were."""
    gated = GatedModel(fixture_lm)
    app = batch_mode_app(gated, tmp_path, PROMPTS, params=greedy())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, BatchScreen)
        assert _footer_keys(screen)["escape"] == "Stop/Back"
        await wait_for(pilot, lambda: gated.started.is_set())
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not screen.running)
        assert statuses(screen) == ["stopped"] * len(PROMPTS)
        assert not any("Nothing selected" in n.message for n in app._notifications)

        screen.lm = fixture_lm  # run the rest for real
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running and screen.run.done == len(PROMPTS))
        done = [r.completion for r in screen.rows]
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, BatchScreen))
        cmds = {c.title: c for c in app.get_system_commands(app.screen)}
        cmds["Batch results"].callback()
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        await pilot.pause()
        again = app.screen
        assert isinstance(again, BatchScreen) and again is not screen
        assert [r.completion for r in again.rows] == done and not again.running
        assert statuses(again) == ["done"] * len(PROMPTS)
        assert again.table.row_count == len(PROMPTS)
        assert again.sub_title == screen.sub_title
        cmds["Batch results"].callback()  # open already: said, not pushed twice
        await pilot.pause()
        assert sum(isinstance(s, BatchScreen) for s in app.screen_stack) == 1


async def test_ctrl_q_during_a_run_asks_first(fixture_lm, tmp_path):
    gated = GatedModel(fixture_lm)
    app = batch_mode_app(gated, tmp_path, PROMPTS, params=greedy())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        await pilot.pause()
        await wait_for(pilot, lambda: gated.started.is_set())
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, BatchScreen)
        assert any("Ctrl+Q again quits" in n.message for n in app._notifications)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, timeout=10)
    assert app.return_code == 0


async def test_ctrl_q_without_a_run_quits_at_once(fixture_lm, tmp_path):
    app = batch_mode_app(fixture_lm, tmp_path, PROMPTS[:2], params=greedy())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, BatchScreen)
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 2)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, timeout=10)


async def test_palette_batch_run_runs_the_default_prompts(fixture_lm, tmp_path):
    from swamla_tui.batch.prompts import DEFAULT_PROMPTS

    from .pilot import loaded_app

    async with loaded_app(fixture_lm, tmp_path, params=greedy()) as (app, pilot):
        cmds = {c.title: c for c in app.get_system_commands(app.screen)}
        cmds["Batch results"].callback()  # nothing yet: said in the chat
        await pilot.pause()
        assert not isinstance(app.screen, BatchScreen)
        assert "No batch results yet" in app.chat_screen.chat.messages()[-1].text
        cmds["Batch run"].callback()
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, BatchScreen) and screen.input.mode is None
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 5)
        assert [r.prompt for r in screen.rows] == list(DEFAULT_PROMPTS)


async def test_the_input_line_shows_only_its_own_keys(fixture_lm):
    app = BatchTestApp(
        lambda: BatchScreen(lm=fixture_lm, params=greedy(), prompts=PROMPTS[:2], autostart=False)
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = app.batch
        assert screen is not None
        assert {"r", "e", "escape"} <= set(_footer_keys(screen))
        await pilot.press("b")
        await pilot.pause()
        shown = {k: d for k, d in _footer_keys(screen).items() if k != "ctrl+q"}
        assert shown == {"enter": "OK", "escape": "Cancel"}
        await pilot.press("escape")  # cancels the question only
        await pilot.pause()
        assert screen.input.mode is None and screen.table.has_focus and not app.dismissed
        assert {"r", "e", "escape"} <= set(_footer_keys(screen))


async def test_export_asks_before_overwriting(tmp_path):
    from tests.support.batch import EchoBatchLM

    app = BatchTestApp(lambda: BatchScreen(lm=EchoBatchLM(), prompts=PROMPTS[:2]))
    target = tmp_path / "mine.jsonl"
    target.write_text("keep me\n", encoding="utf-8")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.batch
        assert screen is not None
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 2)
        for answer, kept in (("n", True), ("y", False)):
            await pilot.press("e")
            screen.input.value = str(target)
            await pilot.press("enter")
            await pilot.pause()
            assert screen.input.mode == "overwrite" and "exists" in str(screen.input.border_title)
            for key in (answer, "enter"):
                await pilot.press(key)
            await pilot.pause()
            assert (target.read_text("utf-8") == "keep me\n") is kept
        assert screen.last_export == target
        assert [json.loads(x)["prompt"] for x in target.read_text("utf-8").splitlines()] == (
            PROMPTS[:2]
        )
