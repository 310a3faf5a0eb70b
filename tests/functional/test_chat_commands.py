"""Every slash command in the app, with good and bad values."""

from __future__ import annotations

import json

import pytest

from swamla_tui.base.params import SamplingParams
from tests.support.fakes import FakeLM

from .pilot import (
    ask,
    errors,
    loaded_app,
    notices,
    send,
    wait_for,
    wait_idle,
)

VALUE_CASES = [
    # command, param, good text, good value, bad text, words expected in the error
    ("temp", "temperature", "1.25", 1.25, "3", ["between 0 and 2"]),
    ("topk", "top_k", "40", 40, "1.5", ["between 0 and 200"]),
    ("topp", "top_p", "0.5", 0.5, "-0.1", ["between 0 and 1"]),
    ("reppen", "repetition_penalty", "1.3", 1.3, "0.5", ["between 1 and 2"]),
    ("max", "max_new_tokens", "100", 100, "513", ["between 1 and 512"]),
]


@pytest.mark.parametrize(("name", "param", "good", "value", "bad", "words"), VALUE_CASES)
async def test_value_commands(tmp_path, name, param, good, value, bad, words):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        before = getattr(app.chat_screen.params, param)
        # no value: shows the current one
        await send(pilot, f"/{name}")
        assert notices(app)[-1].startswith(f"{name} = ")
        assert getattr(app.chat_screen.params, param) == before
        # bad value: inline error with the range, nothing changes
        await send(pilot, f"/{name} {bad}")
        assert all(w in errors(app)[-1] for w in words), errors(app)[-1]
        assert getattr(app.chat_screen.params, param) == before
        assert app.chat_screen.sidebar.slider(param).value == before
        # good value: set, and the slider moves
        await send(pilot, f"/{name} {good}")
        assert getattr(app.chat_screen.params, param) == value
        assert app.chat_screen.sidebar.slider(param).value == value
        assert notices(app)[-1] == f"{name} set to {good}"


async def test_value_command_reaches_running_stream(tmp_path):
    lm = FakeLM(hold=True, endless=True)
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await send(pilot, "hi")
        lm.release(1)
        # the first token must have been sampled before the command changes the params
        await wait_for(pilot, lambda: lm.streams and len(lm.streams[0].seen) == 1)
        await send(pilot, "/temp 1.5")
        lm.release(1)
        await wait_for(pilot, lambda: len(lm.streams[0].seen) == 2)
        await send(pilot, "/max 3")
        lm.release(5)
        await wait_idle(pilot)
        seen = lm.streams[0].seen
        assert seen[0]["temperature"] == 0.0
        assert seen[-1]["temperature"] == 1.5
        assert len(seen) == 3
        assert app.chat_screen.conversation.turns[-1].assistant == "Hello, world"


async def test_seed_command(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        await send(pilot, "/seed")
        assert notices(app)[-1] == "seed = 0"
        await send(pilot, "/seed 1234")
        assert app.chat_screen.params.seed == 1234
        await send(pilot, "/seed off")
        assert app.chat_screen.params.seed is None
        assert notices(app)[-1] == "seed off"
        await send(pilot, "/seed -1")
        assert "whole number" in errors(app)[-1]
        assert app.chat_screen.params.seed is None


async def test_system_command(tmp_path):
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await send(pilot, "/system")
        assert notices(app)[-1] == "system prompt: off"
        await send(pilot, "/system You are terse.")
        assert app.chat_screen.conversation.system == "You are terse."
        await ask(pilot, "hi")
        assert lm.prompts[-1] == "You are terse.\n\nYou: hi\nAssistant:"
        await send(pilot, "/system off")
        assert app.chat_screen.conversation.system is None


async def test_quit_and_exit(tmp_path):
    for name in ("quit", "exit"):
        async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
            await send(pilot, f"/{name}")
            await pilot.pause()
        assert app.return_code == 0


async def test_clear_undo_retry(tmp_path):
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await send(pilot, "/undo")
        assert notices(app)[-1] == "Nothing to undo."
        await send(pilot, "/retry")
        assert notices(app)[-1] == "Nothing to retry."
        await ask(pilot, "one")
        await ask(pilot, "two")
        await send(pilot, "/undo")
        assert [t.user for t in app.chat_screen.conversation.turns] == ["one"]
        assert app.chat_screen.prompt_input.text == "two"  # back in the input (issue 22)
        assert [m.text for m in app.chat_screen.chat.messages() if m.role == "user"] == ["one"]
        lm.pieces = [" Again"]
        await ask(pilot, "/retry")
        assert [(t.user, t.assistant) for t in app.chat_screen.conversation.turns] == [
            ("one", "Again")
        ]
        assert [m.text for m in app.chat_screen.chat.messages() if m.role == "assistant"] == [
            "Again"
        ]
        assert lm.prompts[-1] == "You: one\nAssistant:"
        await send(pilot, "/clear")
        assert app.chat_screen.conversation.turns == []
        assert [m.role for m in app.chat_screen.chat.messages()] == ["notice"]
        await send(pilot, "/undo extra")
        assert "takes no arguments" in errors(app)[-1]
    files = list((tmp_path / "data" / "transcripts").glob("*.jsonl"))
    kinds = [json.loads(x)["type"] for x in files[0].read_text().splitlines()]
    # /clear starts a new transcript (none yet: no turn since); this one stays whole
    assert kinds == ["header", "turn", "turn", "undo", "undo", "turn"]


async def test_save_command(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        await send(pilot, "/save")
        assert notices(app)[-1] == "Nothing to save yet."
        await ask(pilot, "hello")
        target = tmp_path / "chat.json"
        await send(pilot, f"/save {target}")
        assert notices(app)[-1] == f"Saved to {target}"
        assert json.loads(target.read_text())["turns"][0]["user"] == "hello"
        await send(pilot, "/save")
        saved = list((tmp_path / "data" / "exports").glob("*.md"))
        assert len(saved) == 1 and "hello" in saved[0].read_text()
        await send(pilot, f"/save {tmp_path / 'x.txt'}")
        assert "use .md or .json" in errors(app)[-1]
        await send(pilot, f"/save {tmp_path}")  # a folder: the default name inside it
        inside = list(tmp_path.glob("conversation-*.md"))
        assert len(inside) == 1 and notices(app)[-1] == f"Saved to {inside[0]}"


async def test_info_help_batch_unknown(tmp_path):
    from swamla_tui.ui.screens.help import HelpScreen

    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        await send(pilot, "/info")
        assert "layers" in notices(app)[-1] and "2 SWA + 1 MLA" in notices(app)[-1]
        await send(pilot, "/help temp")
        assert notices(app)[-1].startswith("/temp [value]")
        await send(pilot, "/help")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await send(pilot, "/tmp 1")
        assert errors(app)[-1] == "Unknown command /tmp — did you mean /temp?"
        await send(pilot, "/batch")
        assert "expects a file path" in errors(app)[-1]
        await ask(pilot, "//not a command")
        assert app.chat_screen.conversation.turns[-1].user == "/not a command"


async def test_batch_command_opens_batch_screen_or_notice(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        try:
            from swamla_tui.ui.screens.batch import BatchScreen  # noqa: F401
        except ImportError:
            await send(pilot, "/batch prompts.txt")
            assert errors(app)[-1] == "The batch view is not available in this build."
        else:
            # a missing file: an inline error, the chat stays (issue 12 §5)
            await send(pilot, f"/batch {tmp_path / 'nope.txt'}")
            await pilot.pause()
            assert type(app.screen).__name__ == "ChatScreen"
            assert "no such file" in errors(app)[-1]
            prompts = tmp_path / "prompts.txt"
            prompts.write_text("one\ntwo\n", encoding="utf-8")
            await send(pilot, f"/batch {prompts}")
            await pilot.pause()
            assert type(app.screen).__name__ == "BatchScreen"


async def test_commands_suggested_while_typing(tmp_path):
    async with loaded_app(FakeLM(), tmp_path, params=SamplingParams()) as (app, pilot):
        box = app.chat_screen.prompt_input
        await pilot.press("slash", "t", "e")
        assert box.suggestion == "mp"
        await pilot.press("tab")
        assert box.text == "/temp"
        box.clear()
        await pilot.press("slash", "r", "e", "p")
        assert box.suggestion == "pen"
        await pilot.press("right")
        assert box.text == "/reppen"
        box.clear()
        await pilot.press("h", "i")
        assert box.suggestion == ""
