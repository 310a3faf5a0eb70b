"""The conversation list without a screen (issue 22 item 5): rows, find by id, rename,
delete, and the model each conversation records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from swamla_tui.base.errors import SwamlaError
from swamla_tui.chat.conversations import Conversations, ModelRef
from swamla_tui.chat.session import ChatSession
from swamla_tui.chat.transcript import TranscriptBusy, TranscriptStore


def chat(store: TranscriptStore, *users: str, model: ModelRef | None = None) -> ChatSession:
    session = ChatSession(store)
    if model is not None:
        session.switch_model(model.checkpoint, model.to_json())
    for user in users:
        session.finish_turn(user, f"reply to {user}", stopped=False)
    return session


def aged(path: Path, seconds: float) -> None:
    """Move `path`'s modification time `seconds` into the past (the list sorts by it)."""
    st = path.stat()
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


def test_rows_have_title_model_turns_newest_first(tmp_path):
    store = TranscriptStore(tmp_path)
    ref = ModelRef("runs/a", "checkpoint_tokens_2M", "runs/a/checkpoint_tokens_2M/model.pt")
    old = chat(store, "first  question\nwith two lines", "again", model=ref)
    old.close()
    assert old.transcript is not None
    aged(old.transcript.path, 60)
    new = chat(store, "hello")
    new.close()
    rows = Conversations(store).list()
    assert [r.title for r in rows] == ["hello", "first question with two lines"]
    assert [r.turns for r in rows] == [1, 2]
    assert rows[1].model == ref and rows[1].model.name == "a/checkpoint_tokens_2M"
    assert rows[0].model is None  # no model was recorded
    assert rows[1].created and not rows[1].renamed and rows[1].id == old.transcript.path.stem


def test_model_switch_is_recorded_and_wins(tmp_path):
    store = TranscriptStore(tmp_path)
    session = chat(store, "hi", model=ModelRef("a.pt", checkpoint="a.pt"))
    session.switch_model("b.pt", ModelRef("user/repo", checkpoint="b.pt").to_json())
    session.finish_turn("more", "yes", stopped=False)
    session.close()
    [row] = Conversations(store).list()
    assert row.model == ModelRef("user/repo", checkpoint="b.pt")
    assert row.turns == 2 and row.skipped == 0


def test_old_transcripts_give_their_source(tmp_path):
    path = tmp_path / "chat-old.jsonl"
    header = {"type": "header", "format": "x", "version": 1, "meta": {"source": "/m/ckpt.pt"}}
    turn = {"type": "turn", "user": "u", "assistant": "a", "stopped": False}
    path.write_text(json.dumps(header) + "\n" + json.dumps(turn) + "\n", encoding="utf-8")
    [row] = Conversations(TranscriptStore(tmp_path)).list()
    assert row.model == ModelRef("/m/ckpt.pt")


def test_unreadable_files_are_left_out(tmp_path):
    (tmp_path / "chat-junk.jsonl").write_text("not json\n", encoding="utf-8")
    chat(TranscriptStore(tmp_path), "kept").close()
    assert [r.title for r in Conversations(TranscriptStore(tmp_path)).list()] == ["kept"]


def test_find_by_id_prefix_and_path(tmp_path):
    store = TranscriptStore(tmp_path)
    a = store.directory / "chat-20260101-101010-000001.jsonl"
    b = store.directory / "chat-20260101-101010-000002.jsonl"
    c = store.directory / "chat-20260202-090000-000000.jsonl"
    for path in (a, b, c):
        path.write_text('{"type": "header"}\n', encoding="utf-8")
    convs = Conversations(store)
    assert convs.find(a.stem) == a
    assert convs.find("20260202") == c  # "chat-" may be left out
    assert convs.find("chat-20260202-09") == c
    assert convs.find(str(b)) == b
    with pytest.raises(SwamlaError, match="matches 2 conversations"):
        convs.find("20260101")
    with pytest.raises(SwamlaError, match="no conversation '2027'"):
        convs.find("2027")
    with pytest.raises(SwamlaError, match="give a conversation id"):
        convs.find("  ")


def test_rename_and_back(tmp_path):
    store = TranscriptStore(tmp_path)
    session = chat(store, "the first message")
    session.close()
    assert session.transcript is not None
    convs = Conversations(store)
    path = session.transcript.path
    assert convs.rename(path, "  My\nproject  ") == "My project"
    [row] = convs.list()
    assert (row.title, row.renamed) == ("My project", True)
    assert convs.rename(path, "x" * 500) == "x" * 119 + "…"
    convs.rename(path, "   ")  # blank: the first message again
    [row] = convs.list()
    assert (row.title, row.renamed) == ("the first message", False)


def test_titles_file_damaged_is_ignored(tmp_path):
    store = TranscriptStore(tmp_path)
    chat(store, "msg").close()
    (tmp_path / "titles.json").write_text("[1, 2", encoding="utf-8")
    assert [r.title for r in Conversations(store).list()] == ["msg"]


def test_delete_removes_the_transcript_and_its_title(tmp_path):
    store = TranscriptStore(tmp_path)
    session = chat(store, "bye")
    session.close()
    assert session.transcript is not None
    path = session.transcript.path
    convs = Conversations(store)
    convs.rename(path, "named")
    convs.delete(path)
    assert not path.exists() and convs.list() == []
    assert json.loads((tmp_path / "titles.json").read_text()) == {}


def test_delete_refuses_a_conversation_open_elsewhere(tmp_path):
    store = TranscriptStore(tmp_path)
    session = chat(store, "busy")  # still open: its transcript is locked
    assert session.transcript is not None
    with pytest.raises(TranscriptBusy):
        Conversations(store).delete(session.transcript.path)
    assert session.transcript.path.exists()
    session.close()
