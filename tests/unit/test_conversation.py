"""Tests for chat state, prompt format, trimming, transcripts and /save."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swamla_tui.base.errors import SwamlaError
from swamla_tui.base.paths import DATA_DIR_ENV, data_dir
from swamla_tui.chat.conversation import (
    STOP_STRINGS,
    Conversation,
    Turn,
    cut_reply,
    save_conversation,
)
from swamla_tui.chat.transcript import Transcript, TranscriptStore


def words(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return len(text.split())


# -- cut_reply --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "generated, reply",
    [
        (" Hello there!", "Hello there!"),
        (" Hi.\nYou: and then", "Hi."),
        (" Hi.\nYou:", "Hi."),
        (" line one\nline two\nYou: x\nAssistant: y", "line one\nline two"),
        ("\nYou: immediately", ""),
        ("", ""),
        ("   ", ""),
        (" keeps You: inline", "keeps You: inline"),
        (" no colon\nYou are nice", "no colon\nYou are nice"),
        (" trailing  \n", "trailing"),
    ],
)
def test_cut_reply(generated: str, reply: str) -> None:
    assert cut_reply(generated) == reply


def test_stop_strings_match_cut() -> None:
    assert STOP_STRINGS == ("\nYou:",)


@given(st.text())
def test_cut_reply_is_idempotent_and_never_contains_stop(text: str) -> None:
    once = cut_reply(text)
    assert cut_reply(once) == once
    assert "\nYou:" not in once
    assert once == once.strip()


# -- prompt format (formats v1 §7) -------------------------------------------------------------


def test_prompt_without_system_or_history() -> None:
    assert Conversation().prompt_for("Hello") == "You: Hello\nAssistant:"


def test_prompt_with_system_and_history() -> None:
    conv = Conversation(system="Be brief.")
    conv.add_turn("Hi", " Hello!")
    conv.add_turn("How are you?", " Fine.\nYou: extra")
    assert conv.history_text() == (
        "Be brief.\n\nYou: Hi\nAssistant: Hello!\nYou: How are you?\nAssistant: Fine.\n"
    )
    assert conv.prompt_for("Bye") == conv.history_text() + "You: Bye\nAssistant:"


def test_user_text_is_stripped() -> None:
    conv = Conversation()
    assert conv.prompt_for("  hi  ") == "You: hi\nAssistant:"
    turn = conv.add_turn("  hi  ", "  yo  ")
    assert turn == Turn("hi", "yo", False)


def test_set_system() -> None:
    conv = Conversation()
    conv.set_system("  pirate  ")
    assert conv.system == "pirate"
    assert conv.history_text() == "pirate\n\n"
    conv.set_system("   ")
    assert conv.system is None
    conv.set_system("x")
    conv.set_system(None)
    assert conv.system is None
    assert conv.history_text() == ""


def test_empty_system_is_not_emitted() -> None:
    assert Conversation(system="").prompt_for("a") == "You: a\nAssistant:"


def test_stopped_turn_kept_in_history() -> None:
    conv = Conversation()
    turn = conv.add_turn("Tell me a story", " Once upon", stopped=True)
    assert turn.stopped
    assert conv.history_text() == "You: Tell me a story\nAssistant: Once upon\n"


# -- undo / retry / clear ---------------------------------------------------------------


def test_undo_and_last_user() -> None:
    conv = Conversation()
    assert conv.undo() is None
    assert conv.last_user() is None
    conv.add_turn("one", "1")
    conv.add_turn("two", "2")
    assert conv.last_user() == "two"
    assert conv.undo() == Turn("two", "2")
    assert conv.last_user() == "one"
    assert conv.history_text() == "You: one\nAssistant: 1\n"


def test_retry_flow() -> None:
    conv = Conversation(system="S")
    conv.add_turn("q", "bad answer")
    msg = conv.last_user()
    assert msg is not None
    conv.undo()
    assert conv.prompt_for(msg) == "S\n\nYou: q\nAssistant:"


def test_clear_keeps_system_prompt() -> None:
    conv = Conversation(system="S")
    conv.add_turn("a", "b")
    conv.context_start = 1
    conv.clear()
    assert conv.turns == []
    assert conv.context_start == 0
    assert conv.system == "S"


# -- fit --------------------------------------------------------------------------------


def make_conv(n: int, system: str | None = "sys prompt") -> Conversation:
    conv = Conversation(system=system)
    for i in range(n):
        conv.add_turn(f"question {i}", f"answer {i}")
    return conv


def test_fit_noop_when_it_fits() -> None:
    conv = make_conv(3)
    assert conv.fit(words, 1000, "new") == 0
    assert conv.context_start == 0


def test_fit_drops_oldest_first() -> None:
    conv = make_conv(5)
    # sys prompt (2) + 5 turns x 6 words + "You: new Assistant:" (3) = 35 words.
    assert words(conv.prompt_for("new")) == 35
    dropped = conv.fit(words, 25, "new")
    assert dropped == 2
    assert words(conv.prompt_for("new")) <= 25
    assert conv.context_turns[0].user == "question 2"
    prompt = conv.prompt_for("new")
    assert prompt.startswith("sys prompt\n\nYou: question 2\n")
    assert prompt.endswith("You: new\nAssistant:")
    # Trimmed turns are kept for display and export.
    assert len(conv.turns) == 5
    assert "question 0" in conv.to_markdown()


def test_fit_never_drops_system_or_new_message() -> None:
    conv = make_conv(3)
    dropped = conv.fit(words, 1, "a very long new message indeed")
    assert dropped == 3
    prompt = conv.prompt_for("a very long new message indeed")
    assert prompt == "sys prompt\n\nYou: a very long new message indeed\nAssistant:"


def test_fit_only_moves_forward_and_reports_new_drops() -> None:
    conv = make_conv(4)
    # 2 (system) + 4 x 6 (turns) + 3 (new message) = 29 words.
    assert conv.fit(words, 20, "x") == 2
    assert conv.fit(words, 20, "x") == 0
    assert conv.fit(words, 1000, "x") == 0
    assert conv.context_start == 2
    conv.add_turn("more", "stuff")  # 23 words
    assert conv.fit(words, 20, "x") == 1
    assert conv.fit(words, 12, "x") == 1
    assert conv.context_start == 4


def test_fit_without_user_msg_measures_history() -> None:
    conv = make_conv(3, system=None)
    assert conv.fit(words, 6) == 2
    assert conv.history_text() == "You: question 2\nAssistant: answer 2\n"
    assert conv.fit(words, 0) == 1
    assert conv.history_text() == ""


def test_fit_on_empty_conversation() -> None:
    assert Conversation().fit(words, 0, "hello") == 0


def test_undo_after_fit_clamps_context_start() -> None:
    conv = make_conv(3)
    conv.fit(words, 0, "x")
    assert conv.context_start == 3
    conv.undo()
    assert conv.context_start == 2
    conv.add_turn("new", "turn")
    assert conv.context_turns == [Turn("new", "turn")]


def test_fit_counts_with_real_prompt_text() -> None:
    seen: list[str] = []

    def counter(text: str) -> int:
        seen.append(text)
        return len(text)

    conv = make_conv(2)
    conv.fit(counter, 10**6, "m")
    assert seen == [conv.prompt_for("m")]


# -- export -----------------------------------------------------------------------------


def test_to_json_round_trip() -> None:
    conv = make_conv(2)
    conv.add_turn("ünïcödé ✓", "日本語", stopped=True)
    conv.context_start = 1
    data = json.loads(conv.to_json())
    assert data["system"] == "sys prompt"
    assert data["turns"][2] == {"user": "ünïcödé ✓", "assistant": "日本語", "stopped": True}
    again = Conversation.from_dict(data)
    assert again == conv
    assert "日本語" in conv.to_json()  # not \u-escaped


@pytest.mark.parametrize("bad", [{}, {"turns": [{"user": "x"}]}, {"turns": 5}, {"turns": [1]}])
def test_from_dict_rejects_malformed(bad: dict[str, Any]) -> None:
    with pytest.raises(SwamlaError):
        Conversation.from_dict(bad)


def test_to_markdown() -> None:
    conv = Conversation(system="Be nice")
    conv.add_turn("Hi", "Hello\nworld")
    conv.add_turn("Story?", "Once", stopped=True)
    conv.add_turn("Empty", "")
    md = conv.to_markdown()
    assert md.startswith("# Conversation\n\n**System:**\n\nBe nice\n")
    assert "**You:**\n\nHi\n\n**Assistant:**\n\nHello  \nworld\n" in md
    assert "Once *(stopped)*" in md
    assert "*(no reply)*" in md
    assert md.endswith("\n") and not md.endswith("\n\n")


def test_to_markdown_empty() -> None:
    assert Conversation().to_markdown() == "# Conversation\n"


# -- data dir ---------------------------------------------------------------------------


def test_data_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    assert data_dir() == tmp_path / "data"
    assert TranscriptStore().directory == tmp_path / "data" / "transcripts"


def test_data_dir_default_uses_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert "swamla-tui" in str(data_dir())
    monkeypatch.setenv(DATA_DIR_ENV, "  ")
    assert "swamla-tui" in str(data_dir())


# -- transcripts ------------------------------------------------------------------------


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_transcript_created_lazily(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path / "t")
    transcript = store.new(system="S", meta={"model": "tiny.pt"})
    assert not transcript.started
    assert not (tmp_path / "t").exists()
    assert store.latest() is None
    assert store.paths() == []


def test_transcript_appends_each_turn_at_once(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    transcript = store.new(system="S", meta={"model": "tiny.pt"})
    transcript.append_turn(Turn("hi", "hello"))
    assert transcript.started
    lines = read_lines(transcript.path)
    assert lines[0]["type"] == "header"
    assert lines[0]["system"] == "S"
    assert lines[0]["meta"] == {"model": "tiny.pt"}
    assert lines[1]["type"] == "turn"
    assert (lines[1]["user"], lines[1]["assistant"], lines[1]["stopped"]) == (
        "hi",
        "hello",
        False,
    )
    transcript.append_turn(Turn("again", "ok", stopped=True))
    assert len(read_lines(transcript.path)) == 3


def test_transcript_fsyncs_every_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)  # the `os` module the transcript writer uses
    transcript = TranscriptStore(tmp_path).new()
    transcript.append_turn(Turn("a", "b"))
    first = len(calls)
    assert first >= 1
    transcript.append_turn(Turn("c", "d"))
    assert len(calls) == first + 1


def test_load_replays_events(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    t = store.new(system="S")
    t.append_turn(Turn("one", "1"))
    t.append_turn(Turn("two", "2"))
    t.record_undo()
    t.record_system("New system")
    t.append_turn(Turn("three", "3", stopped=True))
    conv = store.load(t.path)
    assert conv.system == "New system"
    assert conv.turns == [Turn("one", "1"), Turn("three", "3", True)]
    t.record_clear()
    t.append_turn(Turn("four", "4"))
    t.record_system(None)
    conv = store.load(t.path)
    assert conv.system is None
    assert conv.turns == [Turn("four", "4")]


def test_load_survives_truncated_last_line(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    t = store.new()
    t.append_turn(Turn("ok", "fine"))
    with open(t.path, "a", encoding="utf-8") as fh:
        fh.write('{"type": "turn", "user": "half')
    assert store.load(t.path).turns == [Turn("ok", "fine")]


def test_load_errors(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    with pytest.raises(SwamlaError, match="cannot read transcript"):
        store.load(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "turn"}\n', encoding="utf-8")
    with pytest.raises(SwamlaError, match="not a swamla-tui transcript"):
        store.load(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(SwamlaError, match="not a swamla-tui transcript"):
        store.load(empty)


def test_latest_is_most_recently_written(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    first = store.new()
    first.append_turn(Turn("a", "b"))
    second = store.new()
    second.append_turn(Turn("c", "d"))
    assert first.path != second.path
    os.utime(first.path, (1_000_000, 1_000_000))
    os.utime(second.path, (2_000_000, 2_000_000))
    assert store.latest() == second.path
    # Resuming the first one and writing to it makes it the latest.
    first.close()  # its writer ended (an open one is locked: tests/unit/test_hardening_ui.py)
    resumed = store.reopen(first.path)
    assert resumed.started
    resumed.append_turn(Turn("e", "f"))
    os.utime(first.path, (3_000_000, 3_000_000))
    assert store.latest() == first.path
    conv = store.load(first.path)
    assert [t.user for t in conv.turns] == ["a", "e"]
    assert len(read_lines(first.path)) == 3  # one header only
    assert store.paths() == [first.path, second.path]


def test_latest_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "dir.jsonl").mkdir()
    assert TranscriptStore(tmp_path).latest() is None


def test_new_paths_are_unique(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    paths = set()
    for _ in range(5):
        t = store.new()
        t.append_turn(Turn("x", "y"))
        paths.add(t.path)
    assert len(paths) == 5


def test_transcript_write_failure_is_swamla_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    t = Transcript(blocker / "sub" / "t.jsonl")
    with pytest.raises(SwamlaError, match="cannot write transcript"):
        t.append_turn(Turn("a", "b"))


def test_unicode_in_transcript(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    t = store.new(system="système")
    t.append_turn(Turn("emoji 🎉\nnewline", "日本語 \u2028 sep"))
    conv = store.load(t.path)
    assert conv.system == "système"
    assert conv.turns == [Turn("emoji 🎉\nnewline", "日本語 \u2028 sep")]


def test_round_trip_conversation_through_transcript(tmp_path: Path) -> None:
    original = make_conv(3)
    store = TranscriptStore(tmp_path)
    t = store.new(system=original.system)
    for turn in original.turns:
        t.append_turn(turn)
    assert store.load(t.path).history_text() == original.history_text()


# -- /save ------------------------------------------------------------------------------


def test_save_markdown_and_json(tmp_path: Path) -> None:
    conv = make_conv(2)
    md = save_conversation(conv, tmp_path / "chat.md")
    assert md.read_text(encoding="utf-8") == conv.to_markdown()
    js = save_conversation(conv, str(tmp_path / "chat.JSON"))
    assert Conversation.from_dict(json.loads(js.read_text(encoding="utf-8"))) == conv
    assert save_conversation(conv, tmp_path / "c.markdown").suffix == ".markdown"


def test_save_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conv = make_conv(1)
    first = save_conversation(conv, directory=tmp_path / "exports")
    second = save_conversation(conv, None, directory=tmp_path / "exports")
    assert first.parent == tmp_path / "exports"
    assert first.suffix == ".md" and first != second
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    third = save_conversation(conv, "  ")
    assert third.parent == tmp_path / "data" / "exports"
    assert third.exists()


def test_save_into_an_existing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``/save DIR``: the default name (as ``/save`` alone), inside DIR."""
    conv = make_conv(1)
    (tmp_path / "notes").mkdir()
    first = save_conversation(conv, tmp_path / "notes", directory=tmp_path / "exports")
    second = save_conversation(conv, f" {tmp_path / 'notes'}/ ", directory=tmp_path / "exports")
    assert first.parent == second.parent == tmp_path / "notes" and first != second
    assert first.name.startswith("conversation-") and first.suffix == ".md"
    assert first.read_text(encoding="utf-8") == conv.to_markdown()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert save_conversation(conv, "~/notes").parent == tmp_path / "notes"
    assert not (tmp_path / "exports").exists()


def test_save_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = save_conversation(make_conv(1), "~/c.md")
    assert path == tmp_path / "c.md"
    assert path.exists()


@pytest.mark.parametrize(
    "name, message",
    [("chat.txt", "unknown format '.txt' (use .md or .json)"), ("chat", "no file extension")],
)
def test_save_rejects_unknown_extension(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(SwamlaError) as info:
        save_conversation(make_conv(1), tmp_path / name)
    assert message in str(info.value)
    assert not (tmp_path / name).exists()


def test_save_write_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SwamlaError) as info:
        save_conversation(make_conv(1), tmp_path / "no\nsuch" / "c.md")
    assert str(info.value).startswith("cannot write ")
    assert len(str(info.value).splitlines()) == 1


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.text(), st.text(), st.booleans()), max_size=5),
    st.none() | st.text(),
)
def test_json_round_trip_property(turns: list[tuple[str, str, bool]], system: str | None) -> None:
    conv = Conversation()
    conv.set_system(system)
    for user, assistant, stopped in turns:
        conv.add_turn(user, assistant, stopped)
    assert Conversation.from_dict(json.loads(conv.to_json())) == conv
