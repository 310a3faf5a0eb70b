"""Pilot tests of the chat app against the fake model (streaming, stop, load, errors)."""

from __future__ import annotations

import json
import threading
import time

from swamla_tui.base.errors import CheckpointError
from swamla_tui.base.params import SamplingParams
from swamla_tui.chat.conversations import ModelRef
from swamla_tui.ui.options import AppOptions
from tests.support.fakes import FakeLM

from .pilot import (
    SIZE,
    ask,
    errors,
    loaded_app,
    notices,
    reply_widget,
    send,
    started,
    wait_for,
    wait_idle,
    wait_loaded,
)


def transcript_records(tmp_path):
    files = sorted((tmp_path / "data" / "transcripts").glob("*.jsonl"))
    assert len(files) == 1
    return [json.loads(line) for line in files[0].read_text().splitlines()]


async def test_first_frame_before_model_loads(tmp_path):
    from swamla_tui.ui.app import SwamlaApp

    release = threading.Event()
    lm = FakeLM()

    def slow_loader(progress):
        progress("Reading checkpoint…")
        release.wait(5)
        return lm

    app = SwamlaApp(slow_loader, AppOptions(params=SamplingParams(), data_dir=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.chat_screen.status_bar.status == "Reading checkpoint…")
        assert app.chat_screen.lm is None
        assert "Reading checkpoint…" in notices(app)
        release.set()
        await wait_loaded(pilot)
        assert app.chat_screen.status_bar.status == "Ready"
        assert app.chat_screen.status_bar.model == lm.summary()
        assert app.chat_screen.sidebar.slider("max_new_tokens").maximum == lm.max_length


async def test_load_failure_shown_and_exit_status_1(tmp_path):
    from swamla_tui.ui.app import SwamlaApp

    def bad_loader(progress):
        raise CheckpointError("no checkpoint at missing.pt")

    options = AppOptions(params=SamplingParams(), data_dir=tmp_path)
    options.model = ModelRef("missing.pt")
    app = SwamlaApp(bad_loader, options)
    async with started(app) as pilot:
        assert app.load_failed == "no checkpoint at missing.pt"
        assert errors(app) == ["Could not load the model: no checkpoint at missing.pt"]
        assert "Load failed" in app.chat_screen.status_bar.status
        await send(pilot, "hello")  # not dropped: it waits in the input, and a notice says so
        assert errors(app)[-1].startswith("No model: no checkpoint at missing.pt — your message")
        assert app.chat_screen.prompt_input.text == "hello"
        assert not app.chat_screen.conversation.turns
        await send(pilot, "/info")  # what is known: the path tried and the error
        assert notices(app)[-1].splitlines() == [
            "model  not loaded",
            "tried  missing.pt",
            "error  no checkpoint at missing.pt",
            "next   Ctrl+Q quits; start again with another checkpoint",
        ]
        await pilot.press("ctrl+q")
    assert app.return_code == 1


async def test_unexpected_load_error_is_one_line(tmp_path):
    from swamla_tui.ui.app import SwamlaApp

    def bad_loader(progress):
        raise RuntimeError("boom\nwith a second line")

    app = SwamlaApp(bad_loader, AppOptions(params=SamplingParams(), data_dir=tmp_path))
    async with started(app):
        assert app.load_failed == "RuntimeError: boom with a second line"


async def test_message_gets_streamed_reply_and_transcript(tmp_path):
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "Hi there")
        msgs = [
            (m.role, m.text)
            for m in app.chat_screen.chat.messages()
            if m.role in ("user", "assistant")
        ]
        assert msgs == [("user", "Hi there"), ("assistant", "Hello, world!")]
        assert lm.prompts == ["You: Hi there\nAssistant:"]
        assert lm.streams[0].stop == ("\nYou:",)
        assert lm.streams[0].params is app.chat_screen.params
        assert app.chat_screen.status_bar.speed == "42.0 tok/s"
        # the gauge: the history the next message carries (the exchange just made)
        history = "You: Hi there\nAssistant: Hello, world!\n"
        await wait_for(
            pilot, lambda: app.chat_screen.status_bar.context == f"ctx {len(history)}/512"
        )
        records = transcript_records(tmp_path)
        assert [r["type"] for r in records] == ["header", "turn"]
        assert records[1]["user"] == "Hi there"
        assert records[1]["assistant"] == "Hello, world!"
        # second turn: appended at once, prompt carries the history
        await ask(pilot, "Again")
        assert [r["type"] for r in transcript_records(tmp_path)] == ["header", "turn", "turn"]
        assert lm.prompts[1] == ("You: Hi there\nAssistant: Hello, world!\nYou: Again\nAssistant:")


async def test_tokens_stream_in_before_reply_finishes(tmp_path):
    lm = FakeLM(hold=True)
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await send(pilot, "Hi")
        assert app.chat_screen.generating
        lm.release(2)
        reply = reply_widget(app)
        await wait_for(pilot, lambda: reply.text == "Hello,")
        assert reply.has_class("-streaming")
        lm.release(10)
        await wait_idle(pilot)
        assert reply.text == "Hello, world!"


async def test_escape_stops_reply_and_keeps_partial(tmp_path):
    lm = FakeLM(hold=True, endless=True)
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await send(pilot, "Hi")
        lm.release(3)
        reply = reply_widget(app)
        await wait_for(pilot, lambda: reply.text == "Hello, world")
        await pilot.press("escape")
        await wait_idle(pilot)
        assert lm.streams[0].cancelled
        assert reply.text == "Hello, world"
        assert reply.has_class("-stopped")
        assert reply.status == "stopped"
        turn = app.chat_screen.conversation.turns[-1]
        assert (turn.assistant, turn.stopped) == ("Hello, world", True)
        assert transcript_records(tmp_path)[-1]["stopped"] is True
        assert app.chat_screen.status_bar.status == "Stopped"


async def test_ctrl_c_stops_reply_and_does_not_quit(tmp_path):
    lm = FakeLM(hold=True, endless=True)
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await send(pilot, "Hi")
        lm.release(1)
        await wait_for(pilot, lambda: reply_widget(app).text == "Hello")
        await pilot.press("ctrl+c")
        await wait_idle(pilot)
        assert app.is_running
        assert app.chat_screen.conversation.turns[-1].stopped
        await pilot.press("ctrl+c")  # idle: a hint, still running
        await pilot.pause()
        assert app.is_running


async def test_generation_error_is_a_notice_and_history_survives(tmp_path):
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "first")
        lm.error_after = 1
        await ask(pilot, "second")
        assert errors(app)[-1] == (
            "Generation failed: RuntimeError: CUDA out of memory"
            " — your message is back in the input"
        )
        assert len(app.chat_screen.conversation.turns) == 1
        assert app.chat_screen.prompt_input.text == "second"  # given back to resend
        lm.error_after = None
        await ask(pilot, "third")
        assert [t.user for t in app.chat_screen.conversation.turns] == ["first", "third"]
        assert "Traceback" not in " ".join(m.text for m in app.chat_screen.chat.messages())


async def test_refresh_is_rate_limited(tmp_path, monkeypatch):
    from swamla_tui.ui.widgets.chat_message import ChatMessage

    updates = 0
    real_set_text = ChatMessage.set_text

    def counting(self, text):
        nonlocal updates
        if self.role == "assistant":
            updates += 1
        real_set_text(self, text)

    monkeypatch.setattr(ChatMessage, "set_text", counting)
    lm = FakeLM(["x"] * 1000, max_length=4096, delay=0.001)
    async with loaded_app(lm, tmp_path, params=SamplingParams(max_new_tokens=3000)) as (app, pilot):
        start = time.monotonic()
        await ask(pilot, "go")
        elapsed = time.monotonic() - start
        assert app.chat_screen.conversation.turns[-1].assistant == "x" * 1000
        # at most ~30 refreshes a second (+1 final set, +slack for timer jitter)
        assert updates <= elapsed * 30 + 3
        assert updates < 1000


async def test_follows_bottom_until_user_scrolls_up(tmp_path):
    lm = FakeLM(["line\n"] * 80, hold=True)
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await send(pilot, "go")
        lm.release(60)
        await wait_for(pilot, lambda: reply_widget(app).text.count("line") == 60)
        await pilot.pause()
        chat = app.chat_screen.chat
        assert chat.max_scroll_y > 0
        assert chat.scroll_y == chat.max_scroll_y
        chat.scroll_to(y=0, animate=False, immediate=True)
        chat.release_anchor()
        await pilot.pause()
        lm.release(20)
        await wait_idle(pilot)
        assert chat.scroll_y == 0


async def test_context_trim_notice(tmp_path):
    lm = FakeLM([" ok"], max_length=120)
    async with loaded_app(lm, tmp_path, params=SamplingParams(max_new_tokens=40)) as (app, pilot):
        for i in range(3):
            await ask(pilot, f"message number {i} " + "z" * 10)
        assert any("oldest" in n for n in notices(app))
        assert len(lm.encode(lm.prompts[-1])) <= 120 - 40
        assert len(app.chat_screen.conversation.turns) == 3  # still shown and saved


async def test_trim_notices_match_the_status_bar_and_long_messages_say_truncated(tmp_path):
    """Issue 22 item 10: "the oldest N turns" is the bar's "(N turns out)" while the reply
    runs; a message longer than the context says it was truncated to its last N tokens."""
    import re

    lm = FakeLM([" ok"], max_length=120, hold=True)
    async with loaded_app(lm, tmp_path, params=SamplingParams(max_new_tokens=40)) as (app, pilot):
        bar = app.chat_screen.status_bar
        checked = 0
        for i in range(6):
            before = len(notices(app))
            await send(pilot, f"message number {i} " + "z" * 10)
            sent = i + 1
            await wait_for(pilot, lambda: len(lm.prompts) == sent)  # noqa: B023 - awaited here
            await pilot.pause(0.1)
            said = [n for n in notices(app)[before:] if "oldest" in n]
            if said:
                m = re.search(r"oldest (\d+) turns", said[-1])
                n_said = int(m.group(1)) if m else 1
                await wait_for(pilot, lambda: "out)" in bar.context)
                assert f"({n_said} turn" in bar.context, (said[-1], bar.context)
                checked += 1
            lm.release()
            await wait_idle(pilot)
        assert checked >= 2  # the count grew past what one message pushed out
        before = len(notices(app))
        await send(pilot, "w" * 300)
        await wait_for(pilot, lambda: len(lm.prompts) == 7)
        await pilot.pause(0.1)
        lm.release()
        await wait_idle(pilot)
        assert (
            f"The message is longer than the context ({len(lm.prompts[-1]):,} tokens): "
            "it was truncated to its last 120 tokens."
        ) in notices(app)[before:]


async def test_history_and_newline_keys(tmp_path):
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        box = app.chat_screen.prompt_input
        await pilot.press("a", "ctrl+j", "b")
        assert box.text == "a\nb"
        await pilot.press("enter")
        await wait_idle(pilot)
        assert app.chat_screen.conversation.turns[-1].user == "a\nb"
        await ask(pilot, "second")
        box.focus()
        await pilot.press("up")
        assert box.text == "second"
        await pilot.press("up")
        assert box.text == "a\nb"
        await pilot.press("down")
        assert box.text == "second"
        await pilot.press("down")
        assert box.text == ""


async def test_resume_reopens_last_conversation(tmp_path):
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "remember me")
    async with loaded_app(lm, tmp_path, resume=True) as (app2, pilot):
        assert [t.user for t in app2.chat_screen.conversation.turns] == ["remember me"]
        roles = [m.role for m in app2.chat_screen.chat.messages()]
        assert roles.count("user") == 1 and roles.count("assistant") == 1
        await ask(pilot, "more")
        assert lm.prompts[-1].startswith("You: remember me\nAssistant: Hello, world!\n")
    files = list((tmp_path / "data" / "transcripts").glob("*.jsonl"))
    assert len(files) == 1


async def test_start_notice_shown(tmp_path):
    async with loaded_app(FakeLM(), tmp_path, notice="CUDA not available: using the CPU") as (
        app,
        pilot,
    ):
        assert "CUDA not available: using the CPU" in notices(app)


def test_ui_modules_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import swamla_tui.ui.app, swamla_tui.ui.screens.help\n"
        "import swamla_tui.ui.widgets.sampling_sidebar\n"
        "bad = [m for m in ('torch', 'transformers', 'swamla_tui.runtime.load') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _run_app_headless(monkeypatch, loader, tmp_path, keys=("ctrl+q",)):
    """Call run_app as the CLI does, with the app headless and an auto-pilot."""
    from swamla_tui.ui import app as app_module

    real_run = app_module.SwamlaApp.run

    async def auto_pilot(pilot):
        await wait_loaded(pilot)
        await pilot.press(*keys)

    def headless_run(self, **kwargs):
        return real_run(self, headless=True, size=SIZE, auto_pilot=auto_pilot)

    monkeypatch.setattr(app_module.SwamlaApp, "run", headless_run)
    return app_module.run_app(loader, AppOptions(params=SamplingParams(), data_dir=tmp_path))


def test_run_app_exit_status(monkeypatch, tmp_path):
    def ok_loader(progress):
        return FakeLM()

    def bad_loader(progress):
        raise CheckpointError("bad checkpoint")

    assert _run_app_headless(monkeypatch, ok_loader, tmp_path) == 0
    assert _run_app_headless(monkeypatch, bad_loader, tmp_path) == 1


async def test_speed_and_stats_are_the_last_replys(tmp_path):
    """The status bar's tok/s and /stats follow the last reply; a reply without a decode
    rate (one token) clears the speed instead of leaving the previous one up."""
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "Hi there")
        assert lm.cache_keys == ["chat"]  # the chat's turn-to-turn cache
        assert app.chat_screen.status_bar.speed == "42.0 tok/s"
        await send(pilot, "/stats")
        await wait_for(pilot, lambda: any("eval rate" in n for n in notices(app)))
        stats = next(n for n in notices(app) if "eval rate" in n)
        assert "eval count            4 token(s)" in stats
        assert "42.00 tokens/s" in stats
        lm.pieces = ["Ok"]
        await ask(pilot, "Again")
        assert lm.cache_keys == ["chat", "chat"]
        assert app.chat_screen.status_bar.speed == ""


async def test_pasted_text_loses_its_control_characters_in_every_input(tmp_path):
    """A bracketed paste reaches the focused input without ESC, BEL, C1 controls or CRs:
    the chat input (multi-line: newlines kept) and a one-line Input (the conversations
    list's rename line); the app cleans every paste before any widget sees it."""
    from textual import events
    from textual.widgets import Input

    from swamla_tui.ui.screens.conversations import ConversationsScreen

    raw = "\x1b]52;c;aGk=\x07one\r\ntwo\x9b2J\x1b[31m"
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        box = app.chat_screen.prompt_input
        box.focus()
        app.post_message(events.Paste(raw))
        await pilot.pause()
        assert box.text == "]52;c;aGk=one\ntwo2J[31m"
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        await pilot.pause()
        search = app.screen.query_one(Input)
        search.focus()
        app.post_message(events.Paste("\x1b[2Jfind\x07 me"))
        await pilot.pause()
        assert search.value == "[2Jfind me"
