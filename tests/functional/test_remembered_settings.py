"""Sampling settings remembered across starts in the app (issue 22 item 7): slash commands
and sliders are remembered, flags given win, ``/defaults`` goes back."""

from __future__ import annotations

import json

from swamla_tui.base.params import SamplingParams
from tests.support.fakes import FakeLM

from .pilot import loaded_app, notices, send


def saved(tmp_path) -> dict[str, object]:
    path = tmp_path / "data" / "settings.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()).get("sampling", {}))


async def test_changes_are_remembered_and_given_flags_win(tmp_path):
    async with loaded_app(FakeLM(), tmp_path, params_given=frozenset()) as (app, pilot):
        assert saved(tmp_path) == {}  # starting writes nothing
        await send(pilot, "/temp 1.3")
        await send(pilot, "/topk 7")
        app.chat_screen.action_focus_sliders()  # temperature slider focused
        await pilot.press("right")
        await pilot.pause()
    assert saved(tmp_path)["temperature"] == 1.35 and saved(tmp_path)["top_k"] == 7
    # the next start: remembered values, except a flag given on the command line
    given = SamplingParams(temperature=0.2)
    async with loaded_app(
        FakeLM(), tmp_path, params=given, params_given=frozenset({"temperature"})
    ) as (app, pilot):
        params = app.chat_screen.params
        assert (params.temperature, params.top_k) == (0.2, 7)
        assert app.chat_screen.sidebar.slider("top_k").value == 7
        await send(pilot, "/topp 0.4")  # a change: remembered, the given flag is not
    assert saved(tmp_path)["temperature"] == 1.35  # the flag is for that run only
    assert saved(tmp_path)["top_p"] == 0.4


async def test_defaults_go_back_and_forget(tmp_path):
    async with loaded_app(FakeLM(), tmp_path, params_given=frozenset()) as (app, pilot):
        await send(pilot, "/reppen 1.5")
        await send(pilot, "/max 100")
        await send(pilot, "/defaults")
        params = app.chat_screen.params
        assert (params.repetition_penalty, params.max_new_tokens) == (1.1, 256)
        assert app.chat_screen.sidebar.slider("repetition_penalty").value == 1.1
        assert notices(app)[-1].startswith("Sampling settings back to their defaults:")
    async with loaded_app(FakeLM(), tmp_path, params_given=frozenset()) as (app, pilot):
        params = app.chat_screen.params
        assert (params.repetition_penalty, params.max_new_tokens) == (1.1, 256)
