"""The rough edges a new user hit (issue 12): memory, copy, scroll, focus, keys, labels."""

from __future__ import annotations

import io
import json

from rich.text import Text
from textual.color import Color
from textual.selection import Selection
from textual.widgets._footer import FooterKey  # not exported by textual.widgets

from swamla_tui.base.params import SamplingParams
from swamla_tui.chat.session import ChatSession
from swamla_tui.chat.template import CHATML
from swamla_tui.chat.transcript import TranscriptStore
from swamla_tui.ui.model_header import checkpoint_name, header_line, short_count
from swamla_tui.ui.widgets.chat_message import ChatMessage
from swamla_tui.ui.widgets.slider import Slider
from tests.support.fakes import FakeLM

from .pilot import (
    SIZE,
    Recording,
    ask,
    loaded_app,
    make_app,
    notices,
    post_keys,
    send,
    started,
    wait_for,
    wait_idle,
    wait_loaded,
)

# -- §1 the model remembers ---------------------------------------------------------------


async def test_second_message_carries_the_first_exchange_at_default_settings(tmp_path):
    lm = FakeLM(max_length=256)  # the demo's window, max_new_tokens 256 by default
    async with loaded_app(lm, tmp_path, params=SamplingParams()) as (app, pilot):
        assert app.chat_screen.params.max_new_tokens == 256
        await ask(pilot, "Hi")
        await ask(pilot, "Again")
        assert lm.prompts[1] == "You: Hi\nAssistant: Hello, world!\nYou: Again\nAssistant:"
        assert not [n for n in notices(app) if "outgrew" in n]
        history = app.chat_screen.conversation.history_text()  # what the next message carries
        await wait_for(
            pilot, lambda: app.chat_screen.status_bar.context == f"ctx {len(history)}/256"
        )


async def test_demo_model_in_the_app_remembers(tmp_path):
    """The real demo model (short replies) at the default settings, through the app."""
    import swamla_tui
    from swamla_tui.demo import DEMO_DIR

    lm = Recording(swamla_tui.load(DEMO_DIR))
    app = make_app(lm, tmp_path, params=SamplingParams(seed=0))  # default max_new_tokens
    async with started(app) as pilot:
        assert app.chat_screen.params.max_new_tokens == 256 == lm.max_length
        await send(pilot, "What is a list?")
        await wait_idle(pilot, timeout=120)
        await send(pilot, "And a tuple?")
        await wait_idle(pilot, timeout=120)
        first = app.chat_screen.conversation.turns[0]
        assert first.assistant
        assert lm.prompts[1] == (
            f"You: What is a list?\nAssistant: {first.assistant}\nYou: And a tuple?\nAssistant:"
        )
        assert not [n for n in notices(app) if "outgrew" in n]


async def test_chatml_model_gets_chatml_turns(tmp_path):
    lm = FakeLM(pieces=[" Hi", "!", "<|im_end|>", "junk"])
    lm.chat_format = CHATML  # as `FormattedModel` carries it
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "Hello")
        assert lm.prompts[0] == (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
        )
        assert lm.streams[0].stop == CHATML.stop
        assert app.chat_screen.conversation.turns[0].assistant == "Hi!"


# -- §3 copy, scroll, focus, keys -----------------------------------------------------------


async def test_copy_selection_last_reply_and_focused_message(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    copied: list[str] = []
    app.copy_to_clipboard = copied.append  # type: ignore[method-assign, assignment]
    async with started(app) as pilot:
        await pilot.press("ctrl+c")  # nothing selected: a hint, nothing copied
        assert copied == []
        await ask(pilot, "Hi there")
        reply = [m for m in app.chat_screen.chat.messages() if m.role == "assistant"][-1]
        app.screen.selections = {reply: Selection(None, None)}  # a mouse drag over it
        await pilot.press("ctrl+c")
        assert copied and "Hello, world!" in copied[-1]
        await send(pilot, "/copy")
        assert copied[-1] == "Hello, world!"
        assert "Copied the last reply" in notices(app)[-1]
        user = [m for m in app.chat_screen.chat.messages() if m.role == "user"][-1]
        user.focus()
        await pilot.press("c")
        assert copied[-1] == "Hi there"


async def test_page_keys_scroll_the_chat_from_the_input(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        for i in range(40):
            app.chat_screen.add_notice(f"line {i}")
        await pilot.pause()
        chat, box = app.chat_screen.chat, app.chat_screen.prompt_input
        chat.scroll_end(animate=False)
        await pilot.pause()
        bottom = chat.scroll_y
        assert bottom > 0 and box.has_focus
        await pilot.press("pageup")
        await wait_for(pilot, lambda: chat.scroll_y < bottom)
        await pilot.press("ctrl+home")
        await wait_for(pilot, lambda: chat.scroll_y == 0)
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: chat.scroll_y > 0)
        await pilot.press("ctrl+end")
        await wait_for(pilot, lambda: chat.scroll_y == chat.max_scroll_y)
        assert box.has_focus and box.text == ""


async def test_sliders_give_the_focus_back(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        box = app.chat_screen.prompt_input
        await pilot.press("f2")
        assert isinstance(app.focused, Slider)
        await pilot.press("escape")
        assert box.has_focus
        await pilot.press("f2")
        await pilot.press("f2")
        assert box.has_focus
        await pilot.press("f2", "right")  # the slider still works
        assert app.chat_screen.params.temperature == 0.05
        await pilot.press("h", "i")
        assert box.has_focus and box.text == "hi"


async def test_message_typed_during_a_reply_stays_in_the_input(tmp_path):
    lm = FakeLM(hold=True)
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await send(pilot, "first")
        assert app.chat_screen.generating
        await send(pilot, "second")
        assert app.chat_screen.prompt_input.text == "second"
        assert "stays in the input" in notices(app)[-1]
        lm.release(10)
        await wait_idle(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(lm.prompts) == 2)
        lm.release(10)
        await wait_idle(pilot)
        assert lm.prompts[1].endswith("You: second\nAssistant:")
        assert [t.user for t in app.chat_screen.conversation.turns] == ["first", "second"]


async def test_keys_in_one_burst_keep_their_order(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        post_keys(app, [*"line one", "ctrl+j", *"line two"])
        await wait_for(pilot, lambda: app.chat_screen.prompt_input.text.endswith("two"))
        assert app.chat_screen.prompt_input.text == "line one\nline two"


async def test_slash_completion_lists_and_cycles(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        box = app.chat_screen.prompt_input
        await pilot.press("slash", "s")
        subtitle = str(box.border_subtitle)
        names = ["/save", "/seed", "/stats", "/system"]
        assert all(name in subtitle for name in names)
        seen = []
        for _ in range(len(names) + 1):
            await pilot.press("tab")
            seen.append(box.text)
        assert sorted(seen[:-1]) == names and seen[-1] == seen[0]
        await pilot.press("space", "o")  # typing again ends the cycle
        assert box.text == f"{seen[0]} o"


# -- §4 what is loaded; Markdown --------------------------------------------------------------


def test_header_line_names_checkpoint_training_and_tokenizer(tmp_path):
    card = {
        "source": "user/swamla/checkpoint_tokens_2M_loss_2.1234",
        "step": "1,200",
        "total_tokens": "2,000,000",
        "val_loss": "2.1234",
        "tokenizer": "/models/tok384",
        "chat format": "ChatML (from the tokenizer)",
    }
    assert header_line(card) == (
        "user/swamla@checkpoint_tokens_2M_loss_2.1234 · step 1.2k · 2M tokens · "
        "val_loss 2.1234 · tok tok384 · ChatML"
    )
    ckpt = tmp_path / "tiny.pt"
    ckpt.write_bytes(b"x")
    assert checkpoint_name(str(ckpt)) == "tiny.pt"
    assert short_count("950") == "950" and short_count("n/a") == "n/a"


async def test_header_shows_the_checkpoint(tmp_path):
    lm = FakeLM()
    lm.card = lambda: {"source": "runs/a/tiny.pt", "step": "120", "tokenizer": "gpt2"}  # type: ignore[method-assign]
    async with loaded_app(lm, tmp_path) as (app, pilot):
        assert app.sub_title == "tiny.pt · step 120 · tok gpt2"


async def test_markdown_toggle_is_remembered(tmp_path):
    lm = FakeLM(pieces=["**bold**", " and", " `code`"])
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "hi")
        reply = [m for m in app.chat_screen.chat.messages() if m.role == "assistant"][-1]
        raw = reply.render()
        assert isinstance(raw, Text) and "**bold**" in raw.plain  # raw text by default
        await send(pilot, "/markdown")
        assert app.chat_screen.markdown and reply.markdown
        assert not hasattr(reply.render(), "plain")  # a Markdown group
        await send(pilot, "/markdown off")
        assert not reply.markdown
        await send(pilot, "/markdown on")
    settings = json.loads((tmp_path / "data" / "settings.json").read_text(encoding="utf-8"))
    assert settings["markdown"] is True
    async with loaded_app(FakeLM(), tmp_path) as (again, pilot):
        assert again.chat_screen.markdown and again.chat_screen.chat.markdown


# -- §6 small things ----------------------------------------------------------------------------


async def test_theme_flag_is_remembered(tmp_path):
    async with loaded_app(FakeLM(), tmp_path, theme="light") as (app, pilot):
        assert app.theme == "swamla-light"
    async with loaded_app(FakeLM(), tmp_path) as (again, pilot):
        assert again.theme == "swamla-light"


async def test_80_columns_keep_the_gauge_and_the_sliders_key(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await wait_for(pilot, lambda: bool(app.chat_screen.status_bar.context))
        line = "".join(seg.text for seg in app.chat_screen.status_bar.render_line(0))
        assert "ctx 0/512" in line

        def sliders_key() -> FooterKey | None:
            keys = {k.key: k for k in app.query("FooterKey").results(FooterKey)}
            return keys.get("ctrl+b")

        # the footer lays its keys out after the first frames: wait for a real region
        await wait_for(pilot, lambda: (k := sliders_key()) is not None and k.region.width > 0)
        sliders = sliders_key()
        assert sliders is not None
        assert sliders.region.right <= 80 and sliders.region.width > 0


async def test_resume_says_one_turn(tmp_path):
    session = ChatSession(TranscriptStore(tmp_path / "data" / "transcripts"))
    session.finish_turn("hi", "hello", stopped=False)
    async with loaded_app(FakeLM(), tmp_path, resume=True) as (app, pilot):
        assert any(n.startswith("Resumed 1 turn from ") for n in notices(app))


async def test_light_theme_slider_track_is_visible(tmp_path):
    async with loaded_app(FakeLM(), tmp_path, theme="light") as (app, pilot):
        slider = app.chat_screen.sidebar.slider("top_p")
        track = slider.get_component_rich_style("slider--track").color
        background = slider.background_colors[1]
        assert track is not None
        track_color = Color.from_rich_color(track)
        assert abs(track_color.brightness - background.brightness) > 0.35


def test_messages_can_be_focused_notices_cannot():
    assert ChatMessage("assistant", "x").can_focus and ChatMessage("user", "x").can_focus
    assert not ChatMessage("notice", "x").can_focus


async def test_message_typed_while_loading_stays_in_the_input(tmp_path):
    import threading

    from swamla_tui.ui.app import SwamlaApp
    from swamla_tui.ui.options import AppOptions

    lm, ready = FakeLM(), threading.Event()

    def slow_loader(progress):
        ready.wait(10)
        return lm

    app = SwamlaApp(slow_loader, AppOptions(data_dir=tmp_path / "data"))
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "early bird")
        assert app.chat_screen.lm is None and app.chat_screen.prompt_input.text == "early bird"
        assert "still loading" in notices(app)[-1]
        ready.set()
        await wait_loaded(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(lm.prompts))
        await wait_idle(pilot)
        assert lm.prompts == ["You: early bird\nAssistant:"]


MD_TEXT = (
    "A list is a sequence of values like [1, 2, 3] that you can index, slice and change in "
    "place; tuples are their immutable counterparts. For example:\n\n- append adds an item\n"
    "- pop removes the last one\n\nThat is all there is to it."
)


def _rendered_lines(widget) -> list[str]:
    from rich.console import Console

    console = Console(width=widget.content_size.width, record=True, file=io.StringIO())
    console.print(widget.render())
    return [line.rstrip() for line in console.export_text().splitlines()]


async def test_markdown_reply_keeps_its_label_apart_and_every_word(tmp_path):
    """Markdown mode: the label is a line of its own and no word is cropped where the
    first line wraps (new and re-rendered replies alike), at 80 columns."""
    lm = FakeLM([w + " " for w in MD_TEXT.split(" ")])
    app = make_app(lm, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        await send(pilot, "/markdown on")  # re-renders the reply already shown
        await send(pilot, "again")
        await wait_idle(pilot)
        await pilot.pause()
        replies = [m for m in app.chat_screen.chat.messages() if m.role == "assistant"]
        assert len(replies) == 2
        for reply in replies:
            lines = _rendered_lines(reply)
            assert lines[0] == "Assistant"
            words = " ".join(lines[1:]).split()
            for word in ("index,", "slice", "change", "counterparts.", "append", "pop"):
                assert word in words
        # a status line under a Markdown reply (B's name, "stopped") is counted in its height
        replies[-1].mark("B · other.pt")
        await pilot.pause()
        await pilot.pause()
        lines = [line for line in _rendered_lines(replies[-1]) if line]
        assert lines[-1] == "— B · other.pt"
        assert replies[-1].size.height >= len(_rendered_lines(replies[-1]))
