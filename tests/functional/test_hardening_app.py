"""Issue 11 in the app: escapes never reach the screen raw (5), a Rust panic is a notice
(10), a busy transcript is not shared (11), crafted commands, paths and transcripts are
notices (12), ``/save`` keeps an existing file (15). The app keeps running throughout.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading

from textual.coordinate import Coordinate

from swamla_tui.chat.transcript import TranscriptStore
from swamla_tui.ui.app import SwamlaApp
from swamla_tui.ui.options import AppOptions
from swamla_tui.ui.screens.batch import BatchDetailScreen, BatchScreen
from tests.support.fakes import FakeLM
from tests.support.hostile_ui import (
    HOSTILE,
    OSC52,
    TITLE,
    HostileBatchLM,
    PanicException,
    deep_json_line,
    notification_texts,
    raw_controls,
)

from .pilot import (
    SIZE,
    ask,
    batch_mode_app,
    errors,
    loaded_app,
    make_app,
    notices,
    send,
    started,
    wait_for,
    wait_loaded,
)


class PanickyEncode:
    """A tokenizer's encode that panics in Rust (counts its calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> list[int]:
        self.calls += 1
        raise PanicException("encode panicked")


def transcript_files(tmp_path):
    return sorted((tmp_path / "data" / "transcripts").glob("*.jsonl"))


async def test_chat_shows_escapes_visibly_and_keeps_them_raw(tmp_path):
    lm = HostileBatchLM()
    reading = threading.Event()
    go_on = threading.Event()

    def loader(progress):
        progress(f"Reading {TITLE}")
        reading.set()
        go_on.wait(10)
        return lm

    app = SwamlaApp(loader, AppOptions(data_dir=tmp_path / "data", notice=f"hi {OSC52}"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "Reading" in app.chat_screen.status_bar.status)
        assert raw_controls(app.export_screenshot()) == []  # status bar and load message
        go_on.set()
        await wait_loaded(pilot)
        await ask(pilot, f"user text {OSC52}")
        await send(pilot, f"/system {HOSTILE}")
        await send(pilot, "/system")
        await send(pilot, "/info")
        await pilot.pause()
        assert raw_controls(app.export_screenshot()) == []
        for message in app.chat_screen.chat.messages():
            assert raw_controls(str(message.render())) == []
        reply = [m for m in app.chat_screen.chat.messages() if m.role == "assistant"][-1]
        assert "␛]52;c;SGVsbG8=␇" in str(reply.render())
        assert "\\x9b31m" in str(reply.render())
        assert app.return_code is None
    # the transcript keeps what the model said, byte for byte
    [path] = transcript_files(tmp_path)
    turn = next(json.loads(x) for x in path.read_text().splitlines() if '"turn"' in x)
    assert turn["user"] == f"user text {OSC52}"
    assert OSC52 in turn["assistant"]


async def test_batch_view_shows_escapes_visibly(tmp_path):
    lm = HostileBatchLM()
    prompts = tmp_path / f"prompts{TITLE}.txt"  # shown in the header
    prompts.write_text(f"prompt {OSC52}\ntwo {TITLE}\x9b2J\n", encoding="utf-8")
    app = SwamlaApp(
        lambda progress: lm,
        AppOptions(mode="batch", prompts_file=str(prompts), data_dir=tmp_path / "data"),
    )
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        screen = app.screen
        assert isinstance(screen, BatchScreen)
        await wait_for(pilot, lambda: not screen.running and screen.run.done == 2)
        await pilot.pause()
        assert raw_controls(app.export_screenshot()) == []
        table = screen.table
        cells = [str(table.get_cell_at(Coordinate(r, c))) for r in range(2) for c in range(3)]
        assert all(raw_controls(c) == [] for c in cells)
        assert any("␛]52" in c for c in cells)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchDetailScreen))
        await pilot.pause()
        assert raw_controls(app.export_screenshot()) == []
        assert screen.rows[0].completion == HOSTILE  # the row (and an export) stay raw
        # c: the prompt goes to the chat input, which would show it raw
        await pilot.press("c")
        await wait_for(pilot, lambda: not isinstance(app.screen, BatchScreen | BatchDetailScreen))
        await pilot.pause()
        assert app.chat_screen.prompt_input.text == "prompt ␛]52;c;SGVsbG8=␇"
        assert raw_controls(app.export_screenshot()) == []


async def test_batch_path_with_markup_is_shown_literally(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app(FakeLM(), tmp_path)
    odd = "x[/]y[b]z[/b].txt"  # a MarkupError when parsed as markup
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_loaded(pilot)
        await send(pilot, f"/batch {odd}")  # a missing file: an inline error, chat stays
        await wait_for(pilot, lambda: any("no such file" in e for e in errors(app)))
        await pilot.pause(0.2)
        assert not isinstance(app.screen, BatchScreen)
        assert any(odd in e for e in errors(app))
        shown = app.export_screenshot().replace("&#160;", " ")
        assert odd in shown  # rendered literally, not parsed as markup
        app.screen.notify(f"[red]{OSC52}[/red] [@click=app.quit]q[/]", timeout=30)
        await pilot.pause(0.2)
        shown = app.export_screenshot().replace("&#160;", " ")
        assert raw_controls(shown) == []
        toast = [t for t in notification_texts(app) if "[@click=app.quit]q[/]" in t]
        assert toast and raw_controls(toast[0]) == []  # literal text, controls visible
        assert app.is_running and app.return_code is None


async def test_rust_panic_in_workers_is_a_notice(tmp_path):
    lm = FakeLM(error_after=0, error=PanicException("regex panicked"))
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "hello")
        assert any("PanicException: regex panicked" in e for e in errors(app))
        lm.error_after = None
        await ask(pilot, "again")
        assert app.chat_screen.conversation.turns[-1].user == "again"  # the app kept running

    # the tokenizer itself panics: context count (a worker) and the reply's planning
    lm = FakeLM()
    lm.encode = PanickyEncode()  # type: ignore[method-assign]
    app = make_app(lm, tmp_path)
    escaped: list[object] = []  # a worker's uncaught panic: "Task exception was never retrieved"
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, ctx: escaped.append(ctx))
    try:
        async with started(app) as pilot:
            await ask(pilot, "hello")
            assert lm.encode.calls >= 2  # the context count and the reply's plan both ran it
            assert any("PanicException: encode panicked" in e for e in errors(app))
            assert app.is_running and app.chat_screen.prompt_input.text == "hello"  # given back
        gc.collect()  # a task holding an unretrieved exception reports it when collected
    finally:
        loop.set_exception_handler(None)
    assert escaped == []

    blm = HostileBatchLM(error_after=1, error=PanicException("tokenizer panicked"))
    app = batch_mode_app(blm, tmp_path, ["one", "two", "three"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BatchScreen))
        screen = app.screen
        assert isinstance(screen, BatchScreen)
        await wait_for(pilot, lambda: not screen.running and screen.run.total == 3)
        assert any("PanicException: tokenizer panicked" in t for t in notification_texts(app))
        assert screen.rows[0].completion == HOSTILE  # the finished row is kept
        assert app.is_running


async def test_huge_seed_is_a_command_error(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        for line in ("/seed " + "9" * 5000, "/max " + "1" * 4301, "/top_k " + "7" * 9999):
            await send(pilot, line)
        found = errors(app)
        assert len(found) == 3 and all("expects a whole number" in e for e in found)
        assert app.chat_screen.params.seed == 0 and app.is_running


async def test_save_keeps_an_existing_file_without_bang(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    target = tmp_path / "mine.md"
    target.write_text("precious", encoding="utf-8")
    async with started(app) as pilot:
        await ask(pilot, "hello")
        await send(pilot, f"/save {target}")
        assert "/save!" in errors(app)[-1]
        assert target.read_text(encoding="utf-8") == "precious"
        await send(pilot, f"/save! {target}")
        assert f"Saved to {target}" in notices(app)[-1]
        assert "hello" in target.read_text(encoding="utf-8")


async def test_resume_skips_a_deep_line_with_a_notice(tmp_path):
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "remember me")
    [path] = transcript_files(tmp_path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(deep_json_line() + "\n")
    async with loaded_app(lm, tmp_path, resume=True) as (app2, pilot):
        assert [t.user for t in app2.chat_screen.conversation.turns] == ["remember me"]
        assert any("Skipped 1 unreadable line" in e for e in errors(app2))
        await ask(pilot, "more")
    assert [t.user for t in TranscriptStore.load(path).turns] == ["remember me", "more"]


async def test_resume_of_a_busy_transcript_continues_in_a_new_file(tmp_path):
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "first")
    [path] = transcript_files(tmp_path)
    other = TranscriptStore(path.parent).reopen(path)  # another instance holds it
    try:
        async with loaded_app(lm, tmp_path, resume=True) as (app2, pilot):
            assert any("open in another swamla-tui" in n for n in notices(app2))
            await send(pilot, "/undo")
            await ask(pilot, "second")
    finally:
        other.close()
    assert [t.user for t in TranscriptStore.load(path).turns] == ["first"]
    new = [p for p in transcript_files(tmp_path) if p != path]
    assert len(new) == 1
    assert [t.user for t in TranscriptStore.load(new[0]).turns] == ["second"]
