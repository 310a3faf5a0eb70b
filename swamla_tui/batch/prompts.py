"""Reading a prompts file for batch mode (pure Python).

Rules of the original script (formats v1 §7): one prompt per line, surrounding whitespace
stripped, blank lines skipped. Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (what Python's
text mode accepts), so a Windows file works; other Unicode separators stay inside a prompt.
The file must be UTF-8; a leading BOM is ignored. Every failure is a `PromptsFileError`
with a one-line message that starts with the path as the user gave it.

Only a regular file is read (a FIFO would block the open, a device never ends), and at
most `MAX_PROMPTS_FILE_BYTES`. A line may be long, but only its tail can reach the
model: `clip_prompt` keeps the last `CHARS_PER_TOKEN * max_length` characters before
anything tokenizes it (a tokenizer given a 50 MB line takes minutes and gigabytes, or
aborts the process).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ..base.errors import PromptsFileError
from ..base.paths import special_kind

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_PROMPTS",
    "MAX_PROMPTS_FILE_BYTES",
    "clip_prompt",
    "load_batch_prompts",
    "parse_prompts",
    "read_prompts",
]

MAX_PROMPTS_FILE_BYTES = 256 * 2**20
"""Bigger prompts files are refused: a batch that large is better split into runs."""

CHARS_PER_TOKEN = 32
"""A token covers at most this many characters in any tokenizer this app meets (GPT-2's
longest tokens are runs of ~30 spaces or dashes), so the last `CHARS_PER_TOKEN *
max_length` characters of a line hold every token the model can see."""

DEFAULT_PROMPTS: tuple[str, ...] = (
    "Once upon a time, in a land far away,",
    "The future of artificial intelligence is",
    "In a world where technology has advanced beyond our wildest dreams,",
    "The most important lesson I learned was",
    "Science and magic are not as different as you might think.",
)
"""The batch prompts the original script uses when no file is given (formats v1 §7)."""

_BOM = b"\xef\xbb\xbf"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _name(path: str | os.PathLike[str]) -> str:
    """The path as the user typed it, kept on one line."""
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)[1:-1]


def parse_prompts(text: str) -> list[str]:
    """Split decoded file text into prompts: one a line, stripped, blanks skipped."""
    return [line.strip() for line in _LINE_BREAK.split(text) if line.strip()]


def _decode(data: bytes, name: str) -> str:
    """UTF-8 decode, or a `PromptsFileError` naming the line and column of the bad byte."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Everything before exc.start is valid UTF-8, so it decodes cleanly.
        before = _LINE_BREAK.split(data[: exc.start].decode("utf-8"))
        line, column = len(before), len(before[-1]) + 1
        hint = ""
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            hint = "; it looks like UTF-16, save it as UTF-8"
        raise PromptsFileError(
            f"{name}: line {line} is not valid UTF-8 "
            f"(byte 0x{data[exc.start]:02x} at column {column}){hint}"
        ) from None


def read_prompts(path: str | os.PathLike[str]) -> list[str]:
    """The prompts in `path`, in file order (an empty list for a file with none).

    Raises `PromptsFileError` when the file is missing, a directory, unreadable or not
    UTF-8, so batch mode can stop with one clear line instead of a traceback.
    """
    name = _name(path)
    p = Path(path)
    if p.is_dir():
        raise PromptsFileError(f"{name}: is a directory, not a prompts file")
    kind = special_kind(p)
    if kind is not None:
        raise PromptsFileError(f"{name}: is {kind}, not a regular file (refused)")
    try:
        with open(p, "rb", opener=_nonblocking) as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):  # swapped for a FIFO or a device since the check
                raise PromptsFileError(f"{name}: is not a regular file (refused)")
            data = fh.read(MAX_PROMPTS_FILE_BYTES + 1)
    except FileNotFoundError:
        raise PromptsFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise PromptsFileError(f"{name}: is a directory, not a prompts file") from None
    except PermissionError:
        raise PromptsFileError(f"{name}: permission denied, cannot read it") from None
    except OSError as exc:
        raise PromptsFileError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_PROMPTS_FILE_BYTES:
        raise PromptsFileError(
            f"{name}: larger than {MAX_PROMPTS_FILE_BYTES >> 20} MB; split it into several runs"
        )
    return parse_prompts(_decode(data, name))


def _nonblocking(path: str, flags: int) -> int:
    """Open without waiting: a FIFO that appeared after the check must not block."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def clip_prompt(prompt: str, max_length: int | None) -> tuple[str, bool]:
    """The part of `prompt` that can reach a model of `max_length` tokens, and whether
    anything was cut: its last `CHARS_PER_TOKEN * max_length` characters."""
    if not max_length or max_length < 1:
        return prompt, False
    budget = CHARS_PER_TOKEN * int(max_length)
    if len(prompt) <= budget:
        return prompt, False
    return prompt[-budget:], True


def load_batch_prompts(path: str | os.PathLike[str] | None) -> list[str]:
    """The prompts of `path`, or the default prompts when `path` is None or empty.

    Unlike `read_prompts`, a file without a single prompt is an error here: a batch run
    of nothing is never what the user meant.
    """
    if not path:
        return list(DEFAULT_PROMPTS)
    prompts = read_prompts(path)
    if not prompts:
        raise PromptsFileError(f"{_name(path)}: the file has no prompts (all lines are blank)")
    return prompts
