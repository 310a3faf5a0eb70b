"""``/ppl FILE`` in the chat app: the table in a notice, bad files in one error line, a snapshot."""

from __future__ import annotations

import itertools
import types

from tests.support.fakes import FakeLM

from .pilot import (
    SIZE,
    errors,
    loaded_app,
    make_app,
    notices,
    send,
    wait_for,
    wait_loaded,
)

TEXT = "You: Hello there, how are you today?\nAssistant: I am fine, thank you. " * 6


async def _run_ppl(pilot, app, arg: str) -> None:
    before = len(app.chat_screen.chat.messages())
    await send(pilot, f"/ppl {arg}")
    await wait_for(
        pilot,
        lambda: (
            len(app.chat_screen.chat.messages()) > before
            and not any(n.endswith("…") for n in notices(app))
        ),
        timeout=60,
    )


async def test_ppl_shows_the_table(fixture_lm, tmp_path):
    from swamla_tui.runtime.perplexity import perplexity

    f = tmp_path / "held_out.txt"
    f.write_text(TEXT, encoding="utf-8")
    expected = perplexity(fixture_lm, TEXT)
    async with loaded_app(fixture_lm, tmp_path) as (app, pilot):
        await _run_ppl(pilot, app, str(f))
        shown = notices(app)[-1].splitlines()
        assert shown[0] == "Perplexity of held_out.txt"
        assert shown[1].split()[:4] == ["checkpoint", "tokens", "loss", "perplexity"]
        row = shown[2].split()
        assert row[0] == "tiny_train.pt"
        assert row[1] == f"{expected.tokens:,}" and row[2] == f"{expected.loss:.4f}"


async def test_ppl_bad_files_are_one_error_line(fixture_lm, tmp_path):
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\xffbinary")
    async with loaded_app(fixture_lm, tmp_path) as (app, pilot):
        await _run_ppl(pilot, app, str(tmp_path / "missing.txt"))
        assert errors(app)[-1].startswith("/ppl missing.txt: ")
        assert "no such file" in errors(app)[-1]
        await _run_ppl(pilot, app, str(binary))
        assert errors(app)[-1].startswith("/ppl blob.bin: ")
        assert all("\n" not in e for e in errors(app))
        await send(pilot, "/ppl")
        assert "expects a file path" in errors(app)[-1]


async def test_ppl_on_a_model_without_logits_is_an_error_not_a_crash(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        await _run_ppl(pilot, app, str(f))
        assert errors(app)[-1].startswith("/ppl t.txt: ")
        await send(pilot, "hello")  # the chat goes on
        await wait_for(pilot, lambda: not app.chat_screen.generating)


def test_ppl_snapshot(snap_compare, fixture_lm, tmp_path, monkeypatch):
    import swamla_tui.runtime.perplexity as ppl_module

    ticks = itertools.count(0.0, 0.5)  # each perf_counter() call: +0.5 s (frozen timing)
    monkeypatch.setattr(ppl_module, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    f = tmp_path / "held_out.txt"
    f.write_text(TEXT, encoding="utf-8")
    app = make_app(fixture_lm, tmp_path)

    async def run_before(pilot) -> None:
        await wait_loaded(pilot)
        app.chat_screen.prompt_input.cursor_blink = False
        await _run_ppl(pilot, app, str(f))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
