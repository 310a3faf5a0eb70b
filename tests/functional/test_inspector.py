"""The token-probability inspector in the chat: /probs, inspect mode, branches, /undo."""

from __future__ import annotations

import json

from swamla_tui.chat.token_tree import ReplyTree, alternatives
from swamla_tui.ui.app import SwamlaApp
from swamla_tui.ui.widgets.chat_message import ChatMessage
from swamla_tui.ui.widgets.token_details import TokenDetails
from tests.support.fakes import FakeLM

from .pilot import SIZE, errors, make_app, notices, send, wait_for, wait_idle, wait_loaded


def _details(app) -> str:
    panel = app.query_one(TokenDetails)
    return str(panel.render()) if panel.has_class("-shown") else ""


def _reply(app: SwamlaApp) -> ChatMessage:
    return app.chat_screen.turn_widgets[-1][1]


def _tree(reply: ChatMessage) -> ReplyTree:
    assert reply.reply_tree is not None, "the reply has no recorded probabilities"
    return reply.reply_tree


async def _probs_reply(pilot, app, text: str = "hi") -> None:
    await send(pilot, "/probs on")
    await send(pilot, text)
    await wait_idle(pilot)
    await wait_for(pilot, lambda: _reply(app).reply_tree is not None)


async def test_probs_toggles_and_is_remembered(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        assert not app.chat_screen.inspector.probs
        await send(pilot, "/probs")
        assert app.chat_screen.inspector.probs and notices(app)[-1].startswith(
            "Token probabilities on"
        )
        await pilot.press("f3")
        assert (
            not app.chat_screen.inspector.probs and notices(app)[-1] == "Token probabilities off."
        )
        await send(pilot, "/probs on")
        assert app.chat_screen.inspector.probs
    settings = json.loads((tmp_path / "data" / "settings.json").read_text())
    assert settings["probs"] is True
    again = make_app(FakeLM(), tmp_path)
    async with again.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        assert again.chat_screen.inspector.probs and again.chat_screen.chat.probs


async def test_replies_record_only_while_on(tmp_path):
    lm = FakeLM()
    app = make_app(lm, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        assert lm.streams[0].logprobs is None and _reply(app).reply_tree is None
        await _probs_reply(pilot, app, "again")
        assert lm.streams[1].logprobs == 5
        reply = _reply(app)
        assert reply.coloured and reply.text == "Hello, world!"
        assert reply.pieces == ["Hello", ",", " world", "!"]  # the leading blank is cut
        await send(pilot, "/probs off")
        assert not reply.coloured and reply.reply_tree is not None


async def test_inspect_mode_moves_token_to_token(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await _probs_reply(pilot, app)
        await pilot.press("f4")
        reply = _reply(app)
        assert reply.inspecting and app.focused is reply
        assert "Token 4 of 4  '!'" in _details(app) and "sampled 5.0%" in _details(app)
        assert "model 4.5%" in _details(app)  # the fake's raw probabilities are 0.9 x
        await pilot.press("left")
        assert reply.cursor == 2 and "Token 3 of 4  ' world'" in _details(app)
        assert "sampled 30.0%" in _details(app) and "entropy 0.70 nats" in _details(app)
        assert "' there'" in _details(app)  # an alternative
        await pilot.press("home")
        assert reply.cursor == 0 and "sampled 95.0%" in _details(app)
        await pilot.press("escape")
        assert not reply.inspecting and _details(app) == ""
        assert app.focused is app.chat_screen.prompt_input
        assert not app.chat_screen.generating  # Esc left inspect mode, it did not stop anything


async def test_esc_on_a_focused_message_still_stops_a_reply(tmp_path):
    lm = FakeLM(hold=True, endless=True)
    app = make_app(lm, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await send(pilot, "/probs on")
        await send(pilot, "hi")
        lm.release(2)
        await wait_for(pilot, lambda: lm.streams and lm.streams[0].new_tokens == 2)
        user = [m for m in app.chat_screen.chat.messages() if m.role == "user"][0]
        user.focus()
        await pilot.press("escape")
        await wait_idle(pilot)
        assert lm.streams[0].cancelled


async def test_clear_hides_the_panel(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await _probs_reply(pilot, app)
        await pilot.press("f4")
        assert _details(app)
        await send(pilot, "/clear")
        await pilot.pause()
        assert _details(app) == ""


async def test_hover_and_click_show_a_token(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await _probs_reply(pilot, app)
        reply = _reply(app)
        # the reply's text line is the second line of the message ("Assistant" above it)
        region = reply.content_region
        line_y = region.y + 1
        x = next(
            x
            for x in range(region.x, region.right)
            if (app.screen.get_style_at(x, line_y).meta or {}).get("token") == 2
        )
        await pilot.hover(offset=(x, line_y))
        await wait_for(pilot, lambda: "Token 3 of 4" in str(reply.tooltip or ""))
        assert "' world'" in str(reply.tooltip) and "sampled 30.0%" in str(reply.tooltip)
        assert not reply.inspecting and _details(app) == ""  # the chat does not move
        await pilot.click(offset=(x, line_y))
        await wait_for(pilot, lambda: reply.inspecting)
        assert reply.cursor == 2 and "Token 3 of 4" in _details(app)
        assert reply.tooltip is None


async def test_branch_regenerates_and_undo_restores(tmp_path):
    lm = FakeLM()
    app = make_app(lm, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await _probs_reply(pilot, app)
        before = app.chat_screen.conversation.turns[-1]
        reply = _reply(app)
        await pilot.press("f4", "left")
        # alternatives at " world" (30%): " there" 35%, " world", " friend", ...
        await pilot.press("1")
        await wait_idle(pilot)
        await wait_for(pilot, lambda: _tree(reply).current.parent is not None)
        stream = lm.streams[-1]
        assert stream.prompt == lm.streams[0].prompt  # same history and cue
        assert stream.prefix_ids == [lm.token_id(p) for p in (" Hello", ",", " there")]
        assert reply.text == app.chat_screen.conversation.turns[-1].assistant == "Hello, there!"
        assert reply.pieces == ["Hello", ",", " there", "!"]
        assert len(app.chat_screen.conversation.turns) == 1 and _reply(app) is reply
        assert notices(app)[-1].startswith("Branched at token 3")
        # a branch of the branch, then back twice
        await pilot.press("f4", "down", "down", "enter")
        await wait_idle(pilot)
        await wait_for(pilot, lambda: _tree(reply).depth == 2)
        second = app.chat_screen.conversation.turns[-1].assistant
        assert second != "Hello, there!"
        await send(pilot, "/undo")
        assert reply.text == app.chat_screen.conversation.turns[-1].assistant == "Hello, there!"
        await send(pilot, "/undo")
        assert app.chat_screen.conversation.turns[-1] == before and reply.text == "Hello, world!"
        assert reply.pieces == ["Hello", ",", " world", "!"]
        await send(pilot, "/undo")  # now the exchange goes
        assert app.chat_screen.conversation.turns == []
        await send(pilot, "/undo")
        assert errors(app)[-1] == "Nothing to undo."


async def test_bad_input_is_one_error_line(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await send(pilot, "/probs banana")
        assert errors(app)[-1] == "/probs expects on or off, got 'banana'"
        await pilot.press("f4")
        assert errors(app)[-1].startswith("Token probabilities are off")
        await send(pilot, "/probs on")
        await pilot.press("f4")
        assert errors(app)[-1] == "No reply to inspect yet."
        await send(pilot, "/probs off")
        await send(pilot, "hello")
        await wait_idle(pilot)
        await send(pilot, "/probs on")
        await pilot.press("f4")
        assert errors(app)[-1].startswith("The last reply has no token probabilities")
        assert all("\n" not in e for e in errors(app))


async def test_control_characters_in_tokens_never_reach_the_screen(tmp_path):
    lm = FakeLM([" ok", "\x1b]52;c;aGk=\x07", " done"])
    app = make_app(lm, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await _probs_reply(pilot, app)
        await pilot.press("f4", "left")
        rendered = str(_reply(app).render()) + _details(app)
        assert "\x1b" not in rendered and "\x07" not in rendered
        assert "␛" in str(_reply(app).render())


def test_inspector_snapshot(snap_compare, tmp_path):
    lm = FakeLM([" The", " sky", " is", " blue", " today", ",", " mostly", "."])
    app = make_app(lm, tmp_path)

    async def run_before(pilot) -> None:
        await wait_loaded(pilot)
        app.chat_screen.prompt_input.cursor_blink = False
        await _probs_reply(pilot, app, "What colour is the sky?")
        await pilot.press("f4", "left", "left", "left", "down")
        app.chat_screen.status_bar.speed = "123.4 tok/s"
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_branch_on_the_reference_model(fixture_lm, tmp_path):
    """End to end on the fixture: the branch continues from the recorded ids, its text is
    decoded from them, and /undo gives back the first reply exactly."""
    from swamla_tui.base.params import SamplingParams

    params = SamplingParams(temperature=0.0, seed=0, max_new_tokens=12)
    app = make_app(fixture_lm, tmp_path, params=params)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await send(pilot, "/probs on")
        await send(pilot, "Hello there, how are you today?")
        await wait_idle(pilot, timeout=60)
        await wait_for(pilot, lambda: _reply(app).reply_tree is not None)
        reply = _reply(app)
        first = app.chat_screen.conversation.turns[-1]
        tree = _tree(reply)
        assert "".join(reply.pieces) == first.assistant == reply.text
        await pilot.press("f4", "home", "right")
        index = reply.cursor
        await pilot.press("2")  # the second alternative offered
        await wait_idle(pilot, timeout=60)
        await wait_for(pilot, lambda: tree.depth == 1)
        branch = tree.current
        assert branch.tokens[:index] == tree.root.tokens[:index]
        assert branch.tokens[index] == alternatives(tree.root.steps[index])[1].token
        assert len(branch.tokens) == len(branch.steps) <= 12
        turn = app.chat_screen.conversation.turns[-1]
        want = fixture_lm.decode([t for t in branch.tokens if t != fixture_lm.eos_id])
        assert (
            turn.assistant == app.chat_screen.conversation.chat_format.cut_reply(want) == reply.text
        )
        await send(pilot, "/undo")
        assert app.chat_screen.conversation.turns[-1] == first and reply.text == first.assistant
        assert "".join(reply.pieces) == first.assistant
