"""The real command in a pseudo-terminal: open the demo chat, type a message, get a reply, /quit."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

ANSI = re.compile(
    rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|.)"
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


class Term:
    def __init__(self, args: list[str], env: dict[str, str], cols: int = 120, rows: int = 36):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
            start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.raw = b""

    def pump(self, seconds: float = 0.1) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if r:
                try:
                    self.raw += os.read(self.master, 65536)
                except OSError:
                    return

    def text(self) -> str:
        return ANSI.sub(b"", self.raw).decode("utf-8", "replace")

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump(0.2)
            if predicate():
                return
            if self.proc.poll() is not None:
                break
        tail = self.text()[-1500:]
        raise AssertionError(f"timed out waiting for {what}; screen text tail:\n{tail}")

    def type(self, s: str) -> None:
        for ch in s:  # like a person: one key at a time
            os.write(self.master, ch.encode())
            self.pump(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.master)


def _turns(data_dir: Path) -> list[dict[str, Any]]:
    out = []
    for f in (data_dir / "transcripts").glob("*.jsonl"):
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("type") == "turn" or "assistant" in rec:
                out.append(rec)
    return out


def test_real_cli_in_a_terminal_chat_and_quit(tmp_path):
    env = dict(os.environ)
    env.update(
        TERM="xterm-256color", HF_HUB_OFFLINE="1", SWAMLA_TUI_DATA_DIR=str(tmp_path),
        COLUMNS="120", LINES="36", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    env.pop("TEXTUAL", None)
    t = Term(
        [
            sys.executable,
            "-m",
            "swamla_tui",
            "--demo",
            "--temperature",
            "0",
            "--max_new_tokens",
            "24",
        ],
        env,
    )
    try:
        t.wait_for(lambda: "SWA" in t.text() and "MLA" in t.text(), 90, "the model to load")
        t.type("What is a list?")
        t.type("\r")
        t.wait_for(lambda: _turns(tmp_path), 90, "the reply to finish (transcript written)")
        turn = _turns(tmp_path)[0]
        assert "What is a list?" in json.dumps(turn)
        t.type("/quit\r")
        end = time.monotonic() + 30
        while t.proc.poll() is None and time.monotonic() < end:
            t.pump(0.2)
        assert t.proc.returncode == 0, t.text()[-1500:]
        assert "Traceback" not in t.text()
    finally:
        t.close()


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TERM="xterm-256color", HF_HUB_OFFLINE="1", SWAMLA_TUI_DATA_DIR=str(tmp_path),
        COLUMNS="80", LINES="24", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    env.pop("TEXTUAL", None)
    return env


def test_missing_checkpoint_fails_before_the_screen_opens(tmp_path):
    t = Term([sys.executable, "-m", "swamla_tui", "--checkpoint", "missing.pt"], _env(tmp_path))
    try:
        start = time.monotonic()
        while t.proc.poll() is None and time.monotonic() - start < 30:
            t.pump(0.1)
        t.pump(0.2)
        assert t.proc.returncode == 1
        assert b"\x1b[?1049h" not in t.raw  # the full screen never opened
        lines = [line for line in t.text().splitlines() if line.strip()]
        assert lines == ["swamla-tui: error: --checkpoint missing.pt: no such file or folder"]
    finally:
        t.close()


def test_keys_typed_in_one_burst_keep_their_order(tmp_path):
    """tmux send-keys 'line one' C-j 'line two': one write, the newline stays in place."""
    t = Term(
        [sys.executable, "-m", "swamla_tui", "--demo", "--temperature", "0",
         "--max_new_tokens", "8"],
        _env(tmp_path), cols=80, rows=24,
    )  # fmt: skip
    try:
        t.wait_for(lambda: "SWA" in t.text() and "MLA" in t.text(), 90, "the model to load")
        os.write(t.master, b"line one\nline two")
        t.pump(0.5)
        t.type("\r")
        t.wait_for(lambda: _turns(tmp_path), 90, "the reply to finish (transcript written)")
        assert _turns(tmp_path)[0]["user"] == "line one\nline two"
    finally:
        t.close()
