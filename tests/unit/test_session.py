"""The Textual-free chat session: planning off the UI thread, trimming, transcript, resume."""

from __future__ import annotations

import json
from pathlib import Path

from swamla_tui.chat.session import ChatSession, plan_turn
from swamla_tui.chat.transcript import TranscriptStore


def words(text: str) -> int:
    return len(text.split())


def session_with_turns(tmp_path: Path, n: int, **kwargs) -> ChatSession:
    session = ChatSession(TranscriptStore(tmp_path / "t"), **kwargs)
    for i in range(n):
        session.finish_turn(f"question {i} " + "w " * 10, f" answer {i}", stopped=False)
    return session


def test_plan_trims_a_copy_and_trim_to_applies_it(tmp_path):
    session = session_with_turns(tmp_path, 4)
    snapshot = session.snapshot()
    plan = plan_turn(snapshot, "  next one  ", words, max_length=60, max_new_tokens=20)
    assert plan.dropped > 0 and plan.context_start == plan.dropped
    assert session.conversation.context_start == 0  # the session is untouched
    assert plan.user == "next one"
    assert plan.prompt.endswith("You: next one\nAssistant:")
    assert words(plan.prompt) <= 40
    session.trim_to(plan.context_start)
    assert session.conversation.context_start == plan.context_start
    session.trim_to(0)  # never moves back
    assert session.conversation.context_start == plan.context_start


def test_transcript_records_and_resume(tmp_path):
    session = session_with_turns(tmp_path, 2, system="Be brief.")
    session.undo()
    session.set_system(None)
    [path] = list((tmp_path / "t").glob("*.jsonl"))
    kinds = [json.loads(line)["type"] for line in path.read_text().splitlines()]
    assert kinds == ["header", "turn", "turn", "undo", "system"]

    session.close()  # the first instance ended: its lock is released
    again = ChatSession(TranscriptStore(tmp_path / "t"), system="New system.")
    resumed = again.resume_latest()
    assert resumed is not None and resumed.path == path and not resumed.busy
    assert again.transcript is not None and again.transcript.path == path
    assert [t.user.split()[1] for t in again.conversation.turns] == ["0"]
    assert again.conversation.system == "New system."  # the command line wins, recorded
    assert json.loads(path.read_text().splitlines()[-1])["system"] == "New system."


def test_resume_without_transcripts(tmp_path):
    assert ChatSession(TranscriptStore(tmp_path / "none")).resume_latest() is None


def test_write_failure_is_reported_and_the_turn_kept(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    reports: list[str] = []
    session = ChatSession(TranscriptStore(blocker / "t"), report=reports.append)
    turn = session.finish_turn("hi", " hello", stopped=False)
    assert session.conversation.turns == [turn]
    assert len(reports) == 1 and "cannot write transcript" in reports[0]
    assert "\n" not in reports[0]


def test_clear_starts_a_new_transcript_and_keeps_the_old_one_whole(tmp_path):
    session = ChatSession(TranscriptStore(tmp_path / "t"))
    session.clear()
    assert not (tmp_path / "t").exists()
    session.finish_turn("a", "b", stopped=True)
    [first] = list((tmp_path / "t").glob("*.jsonl"))
    session.clear()
    assert session.conversation.turns == [] and session.last_user() is None
    assert session.transcript is None
    session.finish_turn("c", "d", stopped=False)
    [second] = [p for p in (tmp_path / "t").glob("*.jsonl") if p != first]
    assert [json.loads(x)["type"] for x in first.read_text().splitlines()] == ["header", "turn"]
    assert [t.user for t in TranscriptStore.load(first).turns] == ["a"]
    assert [t.user for t in TranscriptStore.load(second).turns] == ["c"]
