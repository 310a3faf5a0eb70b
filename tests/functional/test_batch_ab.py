"""A/B in the batch view and the chat (issue 13 part 3): two real models, Pilot-driven."""

from __future__ import annotations

import json

from swamla_tui.base.params import SamplingParams
from swamla_tui.batch.compare import COMPARE_FIELDS
from swamla_tui.batch.job import BatchRow
from swamla_tui.runtime.memcheck import MemoryCheckError
from swamla_tui.ui.screens.batch import BatchDetailScreen, BatchScreen
from swamla_tui.ui.widgets.batch_table import ab_widths, pair_status
from tests.support.batch import BatchTestApp, FixedTimeLM

from .pilot import batch_mode_app, make_app, send, wait_idle, wait_loaded
from .test_batch_view import PROMPTS as VIEW_PROMPTS
from .test_batch_view import cell
from .test_batch_view import wait_for as _wait_for

SLOW = 300.0  # two models on a shared CPU: generous, the run ends long before


async def wait_for(pilot, predicate, timeout: float = SLOW) -> None:
    await _wait_for(pilot, predicate, timeout)


PROMPTS = VIEW_PROMPTS[:5]


def greedy() -> SamplingParams:
    return SamplingParams(temperature=0.0, max_new_tokens=8)


def b_rows(screen: BatchScreen) -> list[BatchRow]:
    assert screen.rows_b is not None, "no B rows: the run is not an A/B run"
    return screen.rows_b


def _expected(lm, params: SamplingParams) -> dict[int, str]:
    return {r.index: r.completion for r in lm.generate_batch(PROMPTS, params)}


async def test_both_models_fill_their_columns_detail_and_export(fixture_lm, fixture_lm_b, tmp_path):
    app = BatchTestApp(
        lambda: BatchScreen(
            lm=fixture_lm,
            params=greedy(),
            prompts=PROMPTS,
            batch_size=2,
            compare=fixture_lm_b,
            names=("a.pt", "b.pt"),
            data_dir=tmp_path,
        )
    )
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.batch
        assert screen is not None
        await wait_for(pilot, lambda: screen.run.total and not screen.running)
        await pilot.pause()
        want_a, want_b = _expected(fixture_lm, greedy()), _expected(fixture_lm_b, greedy())
        assert want_a != want_b  # two different models
        assert [r.completion for r in screen.rows] == [want_a[i] for i in range(len(PROMPTS))]
        assert [r.completion for r in b_rows(screen)] == [want_b[i] for i in range(len(PROMPTS))]
        assert [cell(screen, i, "status") for i in range(len(PROMPTS))] == ["done"] * 5
        assert cell(screen, 1, "completion_b").startswith(want_b[1].strip()[:10])
        assert cell(screen, 1, "tok_s_a") and cell(screen, 1, "tok_s_b")
        assert "A: a.pt · B: b.pt" in str(screen.sub_title)

        screen.show_detail(1)
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, BatchDetailScreen)
        b_text = str(detail.query_one("#detail-completion-b").render())
        assert b_text == want_b[1]
        assert str(detail.query_one("#detail-completion-a").render()) == want_a[1]
        await pilot.press("escape")

        out = screen.export(tmp_path / "ab.jsonl")
        assert out is not None
        recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert [list(r) for r in recs] == [list(COMPARE_FIELDS)] * len(PROMPTS)
        assert [r["completion_b"] for r in recs] == [want_b[i] for i in range(len(PROMPTS))]
        # re-running one row runs it on both models again
        screen.rows[2].completion = b_rows(screen)[2].completion = "stale"
        await pilot.press("down", "down")
        screen.action_rerun_row()
        await wait_for(
            pilot, lambda: not screen.running and b_rows(screen)[2].completion != "stale"
        )
        assert screen.rows[2].completion == want_a[2]
        assert b_rows(screen)[2].completion == want_b[2]


async def test_a_b_table_is_readable_at_80_columns(fixture_lm):
    widths = ab_widths(80)
    used = sum(widths[k] + 2 for k in ("n", "status", "prompt", "completion_a", "completion_b"))
    assert used <= 80 - 2 and widths["completion_a"] >= 16
    wide = ab_widths(120)
    assert sum(w + 2 for w in wide.values()) <= 120 - 2  # every column in view at 120
    done, queued = BatchRow(0, "p", status="done"), BatchRow(0, "p")
    assert pair_status(done, queued) == "running" and pair_status(done, done) == "done"
    app = BatchTestApp(
        lambda: BatchScreen(lm=fixture_lm, params=greedy(), prompts=PROMPTS[:2], compare=fixture_lm)
    )
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.batch
        assert screen is not None
        await wait_for(pilot, lambda: screen.run.total and not screen.running)
        await pilot.pause()
        columns = {c.key.value: c.width for c in screen.table.columns.values()}
        assert columns["completion_a"] == columns["completion_b"] == widths["completion_a"]


async def test_app_batch_mode_with_compare_runs_both(fixture_lm, fixture_lm_b, tmp_path):
    calls = []

    def load_second(first, source, progress):
        calls.append((first, source))
        progress("reading b.pt")
        return fixture_lm_b

    app = batch_mode_app(
        fixture_lm,
        tmp_path,
        PROMPTS[:2],
        params=greedy(),
        compare="b.pt",
        load_second=load_second,
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        screen = app.screen
        assert isinstance(screen, BatchScreen)
        await wait_for(pilot, lambda: screen.run.total and not screen.running)
        assert calls == [(fixture_lm, "b.pt")]
        assert screen.compare is fixture_lm_b and screen.rows_b is not None
        assert all(r.status == "done" for r in b_rows(screen))


async def test_incompatible_or_too_big_b_is_one_line_and_a_stays(fixture_lm, tmp_path):
    from swamla_tui.cli.main import DEMO_DIR
    from swamla_tui.runtime.load import load

    demo = load(str(DEMO_DIR))  # vocabulary 1,536: not the fixture's 512

    def too_big(first, source, progress):
        raise MemoryCheckError(f"cannot compare: {source} needs about 9.0 GB, only 1.0 GB is free")

    for second, expect in (
        (lambda f, s, p: demo, "has a vocabulary of 512 tokens, B ("),
        (too_big, "b.pt needs about 9.0 GB"),
    ):
        app = batch_mode_app(
            fixture_lm, tmp_path, PROMPTS[:2], params=greedy(), compare="b.pt", load_second=second
        )
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda app=app: isinstance(app.screen, BatchScreen))
            screen = app.screen
            assert isinstance(screen, BatchScreen)
            await wait_for(pilot, lambda s=screen: s.run.total and not s.running)
            assert screen.compare is None and screen.rows_b is None
            assert [r.status for r in screen.rows] == ["done", "done"]  # A alone still runs
            errors = [m.text for m in app.chat_screen.chat.messages() if m.role == "error"]
            assert len(errors) == 1 and "\n" not in errors[0]
            assert errors[0].startswith("Could not load B: cannot compare: ")
            assert expect in errors[0]
            assert app.chat_screen.compare.error is not None and app.chat_screen.compare.lm is None


async def test_chat_compare_answers_the_last_message_with_b(tmp_path):
    from tests.support.fakes import FakeLM

    a, b = FakeLM([" from", " A"]), FakeLM([" from", " B"])
    b.source = "other.pt"
    app = make_app(a, tmp_path, compare=None, load_second=lambda first, src, p: b)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        await send(pilot, "/compare")
        await pilot.pause()
        errors = [m.text for m in app.chat_screen.chat.messages() if m.role == "error"]
        assert errors[-1] == ("No second model: start with --compare B or type /compare PATH.")
        await send(pilot, "hello")
        await wait_idle(pilot)
        await send(pilot, "/compare other.pt")
        await wait_for(
            pilot,
            lambda: not app.chat_screen.compare.loading and not app.chat_screen.compare.answering,
        )
        await pilot.pause()
        replies = [m for m in app.chat_screen.chat.messages() if m.role == "assistant"]
        assert [r.text for r in replies] == ["from A", "from B"]
        assert replies[-1].status == "B · other.pt"
        assert b.prompts == a.prompts  # the same history went to B
        assert b.streams[0].params.seed == a.streams[0].params.seed == 0
        turns = app.chat_screen.conversation.turns
        assert len(turns) == 1 and turns[0].assistant == "from A"  # history keeps A's
        # /compare again needs no path: B is loaded
        await send(pilot, "/compare")
        await wait_for(pilot, lambda: not app.chat_screen.compare.answering)
        await pilot.pause()
        assert len(b.prompts) == 2


async def test_esc_stops_b_and_a_waits_while_b_streams(tmp_path):
    """One generation at a time: while B answers /compare, a message to A is held in the
    input, and Esc stops B (its partial reply stays, marked stopped)."""
    from tests.support.fakes import FakeLM

    a, b = FakeLM([" from", " A"]), FakeLM([" from", " B"], hold=True, endless=True)
    b.source = "other.pt"
    app = make_app(a, tmp_path, compare=None, load_second=lambda first, src, p: b)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        await send(pilot, "hello")
        await wait_idle(pilot)
        await send(pilot, "/compare other.pt")
        await wait_for(pilot, lambda: app.chat_screen.compare.answering and len(b.streams) == 1)
        b.release(3)
        await wait_for(pilot, lambda: b.streams[0].new_tokens >= 3)
        assert app.chat_screen.generating
        await send(pilot, "second question")
        await pilot.pause()
        assert len(a.streams) == 1  # A did not start
        assert app.chat_screen.prompt_input.text == "second question"  # held, not lost
        await pilot.press("escape")  # B waits for its next token: the cancel must reach it
        await wait_for(pilot, lambda: not app.chat_screen.compare.answering)
        await pilot.pause()
        reply_b = [m for m in app.chat_screen.chat.messages() if m.role == "assistant"][-1]
        assert reply_b.status == "B · other.pt · stopped"
        assert reply_b.text.startswith("from B")
        assert not app.chat_screen.generating
        await pilot.press("enter")  # the held message goes to A now
        await wait_idle(pilot)
        assert len(a.streams) == 2 and "second question" in a.prompts[-1]


def test_ab_table_snapshot(snap_compare, fixture_lm, fixture_lm_b):
    app = BatchTestApp(
        lambda: BatchScreen(
            lm=FixedTimeLM(fixture_lm),
            params=greedy(),
            prompts=PROMPTS,
            clock=lambda: 0.0,
            compare=FixedTimeLM(fixture_lm_b, seconds=0.25),
            names=("tiny_train.pt", "tiny_train_b.pt"),
        )
    )

    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: app.batch is not None and app.batch.run.total)
        await wait_for(pilot, lambda: app.batch is not None and not app.batch.running)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)
