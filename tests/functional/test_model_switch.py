"""``/model PATH_OR_REPO`` (issue 22 item 6): the chat goes on with another model, loaded
through the second model's loader (its memory check); a failure keeps the old one."""

from __future__ import annotations

import json
import threading
from typing import cast

from swamla_tui.base.errors import SwamlaError
from swamla_tui.chat.conversations import Conversations
from swamla_tui.chat.transcript import TranscriptStore
from tests.support.fakes import FakeLM

from .pilot import ask, errors, loaded_app, notices, send, wait_for


def other_lm() -> FakeLM:
    lm = FakeLM([" Other"], max_length=256)
    lm.source = "other.pt"
    return lm


async def test_switch_keeps_the_conversation_and_records_the_model(tmp_path):
    a, b = FakeLM(), other_lm()
    asked: list[tuple[object, str]] = []
    gate = threading.Event()

    def load_second(first, source, progress):
        asked.append((first, source))
        progress("Reading other.pt")
        gate.wait(5)
        return b

    async with loaded_app(a, tmp_path, load_second=load_second) as (app, pilot):
        chat = app.chat_screen
        await ask(pilot, "hello")
        await send(pilot, "/model runs/other.pt")
        await wait_for(pilot, lambda: notices(app)[-1] == "Reading other.pt")
        assert chat.status_bar.status == "Reading other.pt"
        await send(pilot, "held")  # nothing is sent while the new model loads
        assert chat.prompt_input.text == "held" and len(a.prompts) == 1
        await send(pilot, "/retry")  # refused before it drops the last turn
        assert [t.user for t in chat.conversation.turns] == ["hello"] and len(a.prompts) == 1
        gate.set()
        await wait_for(pilot, lambda: chat.lm is cast(object, b))
        assert asked == [(a, "runs/other.pt")]  # the memory check gets the loaded model
        assert any(n.startswith("Switched to 1,234 params") for n in notices(app))
        assert chat.sidebar.max_length == 256
        chat.prompt_input.clear()
        await ask(pilot, "and now?")
        assert b.prompts[-1].startswith("You: hello\nAssistant: Hello, world!\nYou: and now?")
        assert [t.assistant for t in chat.conversation.turns] == ["Hello, world!", "Other"]
        assert chat.session.transcript is not None
        path = chat.session.transcript.path
    kinds = [json.loads(x)["type"] for x in path.read_text().splitlines()]
    assert kinds == ["header", "turn", "model", "turn"]
    [row] = Conversations(TranscriptStore(tmp_path / "data" / "transcripts")).list()
    assert row.model is not None
    assert (row.model.source, row.model.checkpoint) == ("runs/other.pt", "other.pt")


async def test_failure_is_one_line_and_the_old_model_stays(tmp_path):
    a = FakeLM()

    def load_second(first, source, progress):
        raise SwamlaError("not enough memory for both models: B needs 9.1 GB, 2.0 GB free")

    async with loaded_app(a, tmp_path, load_second=load_second) as (app, pilot):
        await send(pilot, "/model big.pt")
        await wait_for(pilot, lambda: bool(errors(app)))
        line = errors(app)[-1]
        assert line.startswith("Could not switch models: not enough memory")
        assert line.endswith("(still on fake.pt).") and "\n" not in line
        assert app.chat_screen.lm is cast(object, a) and not app.chat_screen.switch.loading
        await ask(pilot, "still here")
        assert a.prompts[-1].endswith("You: still here\nAssistant:")


async def test_model_without_path_shows_it_and_busy_refuses(tmp_path):
    lm = FakeLM(hold=True)
    async with loaded_app(lm, tmp_path, load_second=lambda f, s, p: FakeLM()) as (app, pilot):
        await send(pilot, "/model")
        assert notices(app)[-1].startswith("Model: fake.pt (1,234 params")
        await send(pilot, "hi")
        await send(pilot, "/model x.pt")
        assert not app.chat_screen.switch.loading
        lm.release(10)
