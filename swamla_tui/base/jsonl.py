"""Reading back an append-only JSONL journal (the batch journal, the checkpoint sweep).

A journal is appended one line per record, in one write; a process killed inside a write
leaves a last line without its newline. `read_journal_lines` returns the records of the
complete lines and the byte length of that valid part, so the caller can cut the torn tail
off before appending again. What a record must hold is the caller's business.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import SwamlaError

__all__ = ["NOT_JSON", "read_journal_lines"]

NOT_JSON = object()
"""Stands for a complete line that is not JSON (or not UTF-8)."""


def read_journal_lines(path: Path) -> tuple[list[tuple[int, Any]], int]:
    """(line number, parsed record or `NOT_JSON`) for each non-blank complete line of
    `path`, and the byte length of the complete lines; a missing file is ([], 0)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as e:
        raise SwamlaError(f"{path}: cannot read ({e.strerror or e})") from None
    valid = data.rfind(b"\n") + 1  # 0 when there is no complete line
    out: list[tuple[int, Any]] = []
    for number, raw in enumerate(data[:valid].split(b"\n")[:-1], 1):
        if not raw.strip():
            continue
        try:
            out.append((number, json.loads(raw.decode("utf-8"))))
        except (UnicodeDecodeError, ValueError, RecursionError):
            out.append((number, NOT_JSON))
    return out, valid
