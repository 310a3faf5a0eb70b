"""SVG snapshots of the chat screen, the help screen and error states.

Deterministic: greedy decoding with a fixed seed, no blinking cursor, and the tokens/s
figure (a wall-clock measurement) frozen once the reply has finished.
Update with: pytest tests/functional/test_snapshots_chat.py --snapshot-update
"""

from __future__ import annotations

from swamla_tui.base.errors import CheckpointError
from swamla_tui.base.params import SamplingParams
from tests.support.fakes import FakeLM

from .pilot import SIZE, ask, make_app, reply_widget, send, wait_for, wait_idle, wait_loaded


def _steady(app) -> None:
    app.chat_screen.prompt_input.cursor_blink = False
    if app.chat_screen.status_bar.speed:
        app.chat_screen.status_bar.speed = "123.4 tok/s"


def test_chat_screen_snapshot(snap_compare, fixture_lm, tmp_path):
    params = SamplingParams(temperature=0.0, seed=0, max_new_tokens=40)
    app = make_app(fixture_lm, tmp_path, params=params)

    async def run_before(pilot) -> None:
        await wait_loaded(pilot)
        app.chat_screen.prompt_input.cursor_blink = False
        await send(pilot, "Hello there, how are you today?")
        await wait_for(pilot, lambda: not app.chat_screen.generating, timeout=60)
        await send(pilot, "/temp")
        _steady(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_chat_stopped_reply_light_theme_snapshot(snap_compare, tmp_path):
    lm = FakeLM(
        [" Sure", "! Here", " is a", " long", " answer", " that", " never", " ends"],
        hold=True,
        endless=True,
    )
    app = make_app(lm, tmp_path, theme="light", system_prompt="You are terse.")

    async def run_before(pilot) -> None:
        await wait_loaded(pilot)
        app.chat_screen.prompt_input.cursor_blink = False
        await send(pilot, "Tell me a story\nin two lines")
        lm.release(6)
        await wait_for(pilot, lambda: reply_widget(app).text.endswith("that"))
        await pilot.press("escape")
        await wait_idle(pilot)
        app.chat_screen.sidebar.slider("top_k").focus()
        await pilot.press("shift+left")
        _steady(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen_snapshot(snap_compare, tmp_path):
    app = make_app(FakeLM(), tmp_path)

    async def run_before(pilot) -> None:
        await wait_loaded(pilot)
        app.chat_screen.prompt_input.cursor_blink = False
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_load_error_snapshot(snap_compare, tmp_path):
    from swamla_tui.ui.app import AppOptions, SwamlaApp

    def bad_loader(progress):
        raise CheckpointError("checkpoint not found: /models/missing.pt")

    app = SwamlaApp(
        bad_loader, AppOptions(params=SamplingParams(seed=0), data_dir=tmp_path / "data")
    )

    async def run_before(pilot) -> None:
        await wait_loaded(pilot)
        app.chat_screen.prompt_input.cursor_blink = False
        await send(pilot, "/temp 5")
        await send(pilot, "/tmep 1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_generation_error_snapshot(snap_compare, tmp_path):
    lm = FakeLM(error_after=2, error=RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    app = make_app(lm, tmp_path)

    async def run_before(pilot) -> None:
        await wait_loaded(pilot)
        app.chat_screen.prompt_input.cursor_blink = False
        await ask(pilot, "Hi")
        _steady(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
