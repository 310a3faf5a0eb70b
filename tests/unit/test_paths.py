"""`base.paths`: only regular files are read or written by user path, bounded in size."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from swamla_tui.base.errors import PromptsFileError, SwamlaError
from swamla_tui.base.paths import (
    read_regular,
    require_regular_file,
    require_writable_target,
    special_kind,
)

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    return path


def _one_line(exc: pytest.ExceptionInfo[SwamlaError]) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


@needs_fifo
@pytest.mark.timeout(20)
def test_fifo_is_refused_unopened(fifo: Path) -> None:
    assert special_kind(fifo) == "a FIFO (named pipe)"
    for call in (
        lambda: require_regular_file(fifo, "prompts file"),
        lambda: require_writable_target(fifo, "output file"),
        lambda: read_regular(fifo, "prompts file", limit=100),
    ):
        with pytest.raises(SwamlaError) as exc:
            call()
        assert "FIFO" in _one_line(exc) and str(fifo) in str(exc.value)


@pytest.mark.timeout(20)
def test_devices_sockets_folders_and_links_to_devices(tmp_path: Path) -> None:
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")
    assert special_kind(link) == "a device"
    with pytest.raises(SwamlaError, match="is a device"):
        read_regular(link, "theme file", limit=10)
    with pytest.raises(SwamlaError, match="is a folder"):
        read_regular(tmp_path, "theme file", limit=10)
    sock_path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(sock_path))
        with pytest.raises(SwamlaError, match="is a socket"):
            require_writable_target(sock_path, "output file")
    finally:
        sock.close()


def test_regular_files_missing_files_and_the_size_cap(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"x" * 100)
    assert read_regular(f, "prompts file", limit=100) == b"x" * 100
    assert special_kind(f) is None and special_kind(tmp_path / "none") is None
    with pytest.raises(PromptsFileError) as exc:
        read_regular(f, "prompts file", limit=99, error=PromptsFileError)
    assert "larger than 99 bytes" in _one_line(exc)
    require_writable_target(tmp_path / "new.jsonl", "output file")  # absent: fine
    with pytest.raises(SwamlaError, match="no such file"):
        require_regular_file(tmp_path / "new.jsonl", "output file")
