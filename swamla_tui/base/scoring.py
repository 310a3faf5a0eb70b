"""The torch-free half of perplexity: the text file, the result and its table.

Split from `swamla_tui.runtime.perplexity` (which imports torch to score) so the UI can read the
file, show the table and catch the file errors without importing torch.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from .errors import SwamlaError

__all__ = ["PerplexityResult", "ScoreOptions", "TextFileError", "format_results", "read_text_file"]


class TextFileError(SwamlaError):
    """The text file to score is missing, not a regular file, binary or not UTF-8."""


class ScoreOptions(TypedDict, total=False):
    """The keyword options of a perplexity run, declared once for the `ScoringModel`
    Protocol and `LoadedModel.perplexity` (``**options: Unpack[ScoreOptions]``);
    `swamla_tui.runtime.perplexity.perplexity` gives them their meaning and defaults."""

    stride: int | None
    batch_size: int | None
    progress: Callable[[int, int], None] | None
    cancel: threading.Event | None


@dataclass
class PerplexityResult:
    checkpoint: str
    tokens: int
    loss: float
    perplexity: float
    bits_per_byte: float
    seconds: float


def read_text_file(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of `path` (a leading BOM dropped); every failure is one line."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise TextFileError(f"{p}: no such file") from None
    except OSError as e:
        raise TextFileError(f"{p}: cannot read ({e.strerror or type(e).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise TextFileError(f"{p}: is a folder, not a text file")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
        )
        raise TextFileError(f"{p}: is {kind}, not a regular file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise TextFileError(f"{p}: cannot read ({e.strerror or type(e).__name__})") from None
    if not data:
        raise TextFileError(f"{p}: empty file")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise TextFileError(f"{p}: looks binary (NUL byte at offset {nul}), not a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextFileError(
            f"{p}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None
    return text.removeprefix("\ufeff")


def format_results(results: Sequence[PerplexityResult]) -> str:
    """A plain-text table: one row per checkpoint."""
    head = ("checkpoint", "tokens", "loss", "perplexity", "bits/byte", "seconds", "tok/s")
    rows = [
        (
            r.checkpoint,
            f"{r.tokens:,}",
            f"{r.loss:.4f}",
            f"{r.perplexity:.3f}",
            f"{r.bits_per_byte:.4f}",
            f"{r.seconds:.2f}",
            f"{r.tokens / r.seconds:,.0f}" if r.seconds > 0 else "-",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    lines = []
    for row in (head, *rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
