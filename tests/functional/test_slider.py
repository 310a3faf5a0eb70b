"""The Slider widget on its own, and the sidebar sliders driving a running stream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from textual.app import App, ComposeResult

from swamla_tui.ui.widgets.slider import Slider
from tests.support.fakes import FakeLM

from .pilot import (
    SIZE,
    loaded_app,
    send,
    wait_for,
    wait_idle,
    wait_loaded,
)


class SliderApp(App[None]):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.changes: list[float] = []

    def compose(self) -> ComposeResult:
        yield Slider(**self.kwargs, id="s")

    def on_slider_changed(self, event: Slider.Changed) -> None:
        self.changes.append(event.value)


async def test_slider_keyboard():
    app = SliderApp(minimum=0.0, maximum=2.0, step=0.05, big_step=0.25, value=0.8, label="T")
    async with app.run_test(size=(40, 4)) as pilot:
        slider = app.query_one(Slider)
        slider.focus()
        await pilot.press("right")
        assert slider.value == 0.85
        await pilot.press("left", "left")
        assert slider.value == 0.75
        await pilot.press("shift+right")
        assert slider.value == 1.0
        await pilot.press("shift+left", "shift+left")
        assert slider.value == 0.5
        await pilot.press("end")
        assert slider.value == 2.0
        await pilot.press("right")
        assert slider.value == 2.0
        await pilot.press("home")
        assert slider.value == 0.0
        await pilot.press("left")
        assert slider.value == 0.0
        await pilot.pause()
        assert app.changes == [0.85, 0.8, 0.75, 1.0, 0.75, 0.5, 2.0, 0.0]


async def test_slider_mouse_click_and_drag():
    app = SliderApp(minimum=0, maximum=100, step=1, value=50, label="K")
    async with app.run_test(size=(42, 4)) as pilot:
        slider = app.query_one(Slider)
        # width 42, padding 0 1 -> 40 content cells: cell 1 is the first, cell 40 the last
        await pilot.click(slider, offset=(1, 1))
        assert slider.value == 0
        await pilot.click(slider, offset=(40, 1))
        assert slider.value == 100
        await pilot.mouse_down(slider, offset=(10, 1))
        v1 = slider.value
        await pilot.hover(slider, offset=(30, 1))
        v2 = slider.value
        await pilot.mouse_up(slider, offset=(30, 1))
        assert v1 == round(9 / 39 * 100)
        assert v2 == round(29 / 39 * 100)
        await pilot.hover(slider, offset=(5, 1))  # not dragging any more
        assert slider.value == v2
        assert slider.has_focus


async def test_slider_render_shows_value():
    app = SliderApp(minimum=0.0, maximum=1.0, step=0.01, value=0.9, label="Top-p")
    async with app.run_test(size=(30, 4)) as pilot:
        slider = app.query_one(Slider)
        await pilot.pause()
        top, track = str(slider.render()).split("\n")
        assert top.startswith("Top-p") and top.endswith("0.90")
        assert len(top) == 28 and len(track) == 28
        assert track.index("●") == round(0.9 * 27)


@given(
    value=st.floats(-10, 10, allow_nan=False),
)
def test_slider_snap_stays_on_grid(value):
    slider = Slider(0.0, 2.0, step=0.05, value=0.8)
    snapped = slider.snap(value)
    assert 0.0 <= snapped <= 2.0
    assert abs(round(snapped / 0.05) * 0.05 - snapped) < 1e-9
    assert snapped == round(snapped, 2)


def test_slider_integer_and_range():
    slider = Slider(1, 2048, step=1, value=256)
    assert slider.value == 256 and isinstance(slider.value, int)
    slider.set_range(1, 100)
    assert slider.value == 100


async def test_sidebar_keyboard_and_mouse_reach_running_stream(tmp_path):
    lm = FakeLM(hold=True, endless=True, copy_params=True)  # stream holds its own copy
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await send(pilot, "hi")
        lm.release(1)
        await wait_for(pilot, lambda: len(lm.streams[0].seen) == 1)
        stream = lm.streams[0]
        assert stream.params is not app.chat_screen.params
        # keyboard: temperature 0.0 -> 0.05 -> 0.30
        temp = app.chat_screen.sidebar.slider("temperature")
        temp.focus()
        await pilot.press("right", "shift+right")
        assert stream.params.temperature == 0.3
        assert app.chat_screen.params.temperature == 0.3
        # mouse: click top-k at its left end, drag top-p to its right end
        topk = app.chat_screen.sidebar.slider("top_k")
        await pilot.click(topk, offset=(1, 1))
        assert stream.params.top_k == 0
        topp = app.chat_screen.sidebar.slider("top_p")
        await pilot.mouse_down(topp, offset=(3, 1))
        await pilot.hover(topp, offset=(topp.outer_size.width - 1, 1))
        await pilot.mouse_up(topp, offset=(topp.outer_size.width - 1, 1))
        assert stream.params.top_p == 1.0
        # end on repetition penalty, home on max tokens: reply stops at its next token
        reppen = app.chat_screen.sidebar.slider("repetition_penalty")
        reppen.focus()
        await pilot.press("end")
        assert stream.params.repetition_penalty == 2.0
        lm.release(1)
        await wait_for(pilot, lambda: len(stream.seen) == 2)
        seen = stream.seen[-1]
        assert (seen["temperature"], seen["top_k"], seen["top_p"]) == (0.3, 0, 1.0)
        assert seen["repetition_penalty"] == 2.0
        maxtok = app.chat_screen.sidebar.slider("max_new_tokens")
        maxtok.focus()
        await pilot.press("home")
        assert stream.params.max_new_tokens == 1
        lm.release(5)
        await wait_idle(pilot)
        assert stream.finish_reason == "length"
        assert len(stream.seen) == 2


async def test_sidebar_clamps_out_of_range_params(tmp_path):
    from swamla_tui.base.params import SamplingParams

    params = SamplingParams(max_new_tokens=5000, top_k=999)
    async with loaded_app(FakeLM(max_length=300), tmp_path, params=params) as (app, pilot):
        assert params.top_k == 200
        assert params.max_new_tokens == 300
        assert app.chat_screen.sidebar.slider("max_new_tokens").maximum == 300


async def test_down_and_up_move_between_the_sliders_and_help_says_so(tmp_path):
    from swamla_tui.ui.screens.help import HelpScreen

    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        sliders = list(app.chat_screen.sidebar.query(Slider))
        assert len(sliders) >= 3
        sliders[0].focus()
        await pilot.press("down")
        assert sliders[1].has_focus
        await pilot.press("down", "up", "up")
        assert sliders[0].has_focus  # the first stays first
        value = sliders[0].value
        assert sliders[0].value == value  # Up/Down never change a value
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.keys)
        assert "Down/Up" in keys["Sliders"] and "Ctrl+Home/Ctrl+End" in keys["Scroll"]
        assert "Copy the focused message" in keys["c"]


async def test_max_new_tokens_thumb_waits_for_the_model_and_does_not_jump(tmp_path):
    """While the model loads, the max-new-tokens limit is unknown: the track has no thumb
    (on the 1..2048 cap it sat at ~12%, then jumped once the limit came); the first thumb
    drawn is at its place on the model's range."""
    import threading

    from swamla_tui.base.params import SamplingParams
    from swamla_tui.ui.app import SwamlaApp
    from swamla_tui.ui.options import AppOptions

    gate = threading.Event()
    lm = FakeLM(max_length=512)

    def loader(progress):
        assert gate.wait(30)
        return lm

    params = SamplingParams(temperature=0.0, seed=0, max_new_tokens=256)
    app = SwamlaApp(loader, AppOptions(data_dir=tmp_path / "data", params=params))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        slider = app.chat_screen.sidebar.slider("max_new_tokens")
        top, track = str(slider.render()).split("\n")
        assert top.endswith("256") and "●" not in track and "━" not in track
        assert "●" in str(app.chat_screen.sidebar.slider("top_k").render())
        gate.set()
        await wait_loaded(pilot)
        await pilot.pause()
        track = str(slider.render()).split("\n")[1]
        width = slider.content_size.width
        assert track.index("●") == round((256 - 1) / (512 - 1) * (width - 1))
        assert slider.value == 256 and params.max_new_tokens == 256
