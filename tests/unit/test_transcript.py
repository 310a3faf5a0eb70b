"""Transcripts: a FIFO or a device where a transcript is expected is refused, never opened
(issue 21 item 6: opening a FIFO blocks until a writer or reader appears)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swamla_tui.base.errors import SwamlaError
from swamla_tui.chat.conversation import Turn
from swamla_tui.chat.transcript import Transcript, TranscriptStore

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A FIFO where a transcript would be (opening it for reading would block forever)."""
    path = tmp_path / "chat.jsonl"
    os.mkfifo(path)
    return path


@needs_fifo
@pytest.mark.timeout(20)
def test_replaying_a_fifo_is_refused(tmp_path: Path, fifo: Path) -> None:
    with pytest.raises(SwamlaError, match=r"cannot read transcript .*FIFO"):
        TranscriptStore(tmp_path).replay(fifo)
    assert TranscriptStore(tmp_path).paths() == []  # not listed for --resume either


@needs_fifo
@pytest.mark.timeout(20)
def test_writing_to_a_fifo_is_refused(fifo: Path) -> None:
    with pytest.raises(SwamlaError, match=r"cannot write transcript .*FIFO"):
        Transcript(fifo).append_turn(Turn("hi", "there"))


@pytest.mark.timeout(20)
def test_replaying_a_link_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "chat.jsonl"
    link.symlink_to("/dev/zero")
    with pytest.raises(SwamlaError, match="is a device"):
        TranscriptStore(tmp_path).replay(link)
