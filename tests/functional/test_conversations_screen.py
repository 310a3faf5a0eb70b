"""The conversation list in the app (issue 22 item 5): Ctrl+O / /conversations / palette,
open, rename, delete (asks first); /clear starts a new transcript; ``--resume ID``."""

from __future__ import annotations

from swamla_tui.chat.conversations import Conversations, ModelRef
from swamla_tui.chat.session import ChatSession
from swamla_tui.chat.transcript import TranscriptStore
from swamla_tui.ui.screens.conversations import ConversationsScreen
from tests.support.fakes import FakeLM

from .pilot import ask, loaded_app, notices, send, wait_for


def store_of(tmp_path) -> TranscriptStore:
    return TranscriptStore(tmp_path / "data" / "transcripts")


def past(tmp_path, *users: str, model: str | None = None) -> ChatSession:
    """A finished conversation in the app's data folder (another run's)."""
    session = ChatSession(store_of(tmp_path))
    if model is not None:
        session.switch_model(model, ModelRef(model).to_json())
    for user in users:
        session.finish_turn(user, f"re: {user}", stopped=False)
    session.close()
    return session


async def open_list(pilot) -> ConversationsScreen:
    app = pilot.app
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, ConversationsScreen)
    return screen


async def test_clear_keeps_earlier_turns_reachable_and_open_brings_them_back(tmp_path):
    lm = FakeLM()
    async with loaded_app(lm, tmp_path) as (app, pilot):
        await ask(pilot, "first topic")
        await send(pilot, "/clear")
        await ask(pilot, "second topic")
        screen = await open_list(pilot)
        assert [r.title for r in screen.rows] == ["second topic", "first topic"]
        table = screen.table
        assert table.row_count == 2
        assert str(table.get_row_at(0)[1]).startswith("● ")  # the open one is marked
        await pilot.press("down", "enter")  # open "first topic"
        await wait_for(pilot, lambda: app.screen is app.chat_screen)
        chat = app.chat_screen
        assert [t.user for t in chat.conversation.turns] == ["first topic"]
        users = [m.text for m in chat.chat.messages() if m.role == "user"]
        assert users == ["first topic"]
        assert any(n.startswith("Opened 1 turn from chat-") for n in notices(app))
        await ask(pilot, "more on it")
        assert lm.prompts[-1].startswith("You: first topic\nAssistant: Hello, world!\n")
    rows = Conversations(store_of(tmp_path)).list()
    assert sorted((r.title, r.turns) for r in rows) == [("first topic", 2), ("second topic", 1)]


async def test_rename_and_delete_with_confirmation(tmp_path):
    keep = past(tmp_path, "keep me")
    gone = past(tmp_path, "delete me")
    assert keep.transcript is not None and gone.transcript is not None
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        await send(pilot, "/history")  # the alias of /conversations
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
        screen = app.screen
        assert isinstance(screen, ConversationsScreen)
        await pilot.pause()
        titles = [r.title for r in screen.rows]
        screen.table.move_cursor(row=titles.index("keep me"))
        await pilot.press("r")
        assert screen.rename_input.has_focus
        for key in "Plans":
            await pilot.press(key)
        await pilot.press("enter")
        assert "Plans" in [r.title for r in screen.rows]
        screen.table.move_cursor(row=[r.title for r in screen.rows].index("delete me"))
        await pilot.press("d")
        assert "Delete “delete me”" in str(screen.status.render())
        await pilot.press("n")  # keeps it
        assert gone.transcript.path.exists()
        await pilot.press("d", "y")
        assert not gone.transcript.path.exists()
        assert [r.title for r in screen.rows] == ["Plans"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat_screen)
        assert app.chat_screen.conversation.turns == []  # nothing was opened
    assert [r.title for r in Conversations(store_of(tmp_path)).list()] == ["Plans"]


async def test_the_open_conversation_is_not_deleted(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        await ask(pilot, "mine")
        transcript = app.chat_screen.session.transcript
        assert transcript is not None
        path = transcript.path
        screen = await open_list(pilot)
        await pilot.press("d")
        assert "open in the chat" in str(screen.status.render())
        await pilot.press("y")
        assert path.exists()


async def test_open_says_when_the_model_differs(tmp_path):
    past(tmp_path, "made elsewhere", model="/runs/other.pt")
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        await open_list(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.chat_screen)
        assert any("made with /runs/other.pt" in n for n in notices(app))


async def test_resume_by_id_opens_that_conversation(tmp_path):
    wanted = past(tmp_path, "the wanted one")
    past(tmp_path, "the latest one")
    assert wanted.transcript is not None
    path = Conversations(store_of(tmp_path)).find(wanted.transcript.path.stem)
    async with loaded_app(FakeLM(), tmp_path, resume=str(path)) as (app, pilot):
        assert [t.user for t in app.chat_screen.conversation.turns] == ["the wanted one"]


async def test_palette_lists_conversations_and_model_entries(tmp_path):
    from swamla_tui.ui.chat.palette import chat_commands

    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        titles = [c.title for c in chat_commands(app.chat_screen, lambda: None)]
        assert {"Conversations", "Switch model", "Sampling defaults"} <= set(titles)
        [switch] = [
            c for c in chat_commands(app.chat_screen, lambda: None) if c.title == "Switch model"
        ]
        switch.callback()
        await pilot.pause()
        assert app.chat_screen.prompt_input.text == "/model "
