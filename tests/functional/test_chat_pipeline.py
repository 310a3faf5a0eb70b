"""The chat screen's one reply pipeline: A's reply and B's /compare answer run in the same
worker group, the reply state drives the status bar and the bindings, Esc cancels the
group; helpers get the screen, never the App."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from textual.worker import Worker

import swamla_tui.ui.chat as chat_helpers
from swamla_tui.ui.chat.reply import GROUP
from swamla_tui.ui.screens.chat import ChatScreen
from tests.support.fakes import FakeLM

from .pilot import make_app, send, wait_for, wait_idle, wait_loaded


def _reply_workers(screen: ChatScreen) -> list[Worker[Any]]:
    return [w for w in screen.workers if w.group == GROUP and w.node is screen]


async def test_a_reply_runs_in_the_group_and_esc_cancels_it(tmp_path):
    a = FakeLM([" tick"], hold=True, endless=True)
    app = make_app(a, tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        screen = app.chat_screen
        assert app.screen is screen and screen.replying == ""
        assert screen.check_action("stop", ()) is None  # Esc: shown, disabled
        await send(pilot, "hello")
        await wait_for(pilot, lambda: len(a.streams) == 1)
        a.release(2)
        await wait_for(pilot, lambda: a.streams[0].new_tokens >= 2)
        assert screen.replying == "A" and screen.generating
        assert screen.check_action("stop", ()) is True
        assert screen.status_bar.status == "Generating…"
        assert screen.status_bar.has_class("-busy")
        workers = _reply_workers(screen)
        assert len(workers) == 1 and workers[0].is_running
        await pilot.press("escape")
        assert workers[0].is_cancelled  # Esc cancels the group at once
        await wait_idle(pilot)
        assert screen.replying == "" and not screen.status_bar.has_class("-busy")
        assert screen.status_bar.status == "Stopped"
        assert screen.conversation.turns[-1].stopped


async def test_b_answers_through_the_same_group(tmp_path):
    a, b = FakeLM([" from", " A"]), FakeLM([" from", " B"], hold=True, endless=True)
    b.source = "other.pt"
    app = make_app(a, tmp_path, load_second=lambda first, src, p: b)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        screen = app.chat_screen
        await send(pilot, "hello")
        await wait_idle(pilot)
        await send(pilot, "/compare other.pt")
        await wait_for(pilot, lambda: screen.replying == "B" and len(b.streams) == 1)
        workers = _reply_workers(screen)
        assert len(workers) == 1 and workers[0].is_running
        assert not screen.status_bar.has_class("-busy")  # B leaves the status bar alone
        assert screen.check_action("stop", ()) is True
        b.release(2)
        await wait_for(pilot, lambda: b.streams[0].new_tokens >= 2)
        await pilot.press("escape")
        assert workers[0].is_cancelled
        await wait_for(pilot, lambda: screen.replying == "")
        reply_b = [m for m in screen.chat.messages() if m.role == "assistant"][-1]
        assert reply_b.status == "B · other.pt · stopped"


async def test_markdown_and_probs_are_screen_state(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_loaded(pilot)
        screen = app.chat_screen
        await send(pilot, "hi")
        await wait_idle(pilot)
        reply = [m for m in screen.chat.messages() if m.role == "assistant"][-1]
        screen.markdown = True
        assert screen.chat.markdown and reply.markdown
        screen.probs = True
        assert screen.chat.probs and reply.probs and screen.inspector.probs
        screen.probs = False
        assert not reply.probs


def test_chat_helpers_never_take_the_app():
    """The helpers see the chat screen (or a narrow port), never `SwamlaApp`."""
    folder = Path(chat_helpers.__file__).parent
    for path in sorted(folder.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "SwamlaApp" not in text, path.name
        assert not re.findall(r"\bapp\.[a-z_]+", text), path.name
