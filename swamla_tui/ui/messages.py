"""Messages posted from worker threads to the app (Textual's post_message is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class LoadProgress(Message):
    text: str


@dataclass
class ModelLoaded(Message):
    lm: Any


@dataclass
class LoadFailed(Message):
    reason: str


@dataclass
class ContextTrimmed(Message):
    dropped: int


@dataclass
class GenerationDone(Message):
    """The generation worker ended: normally, cancelled, or with `error` (one line)."""

    stream: Any
    text: str
    error: str | None = None


def one_line(exc: BaseException) -> str:
    """A user-facing one-line reason for an exception (never a traceback)."""
    text = " ".join(str(exc).split())
    if not text:
        text = type(exc).__name__
    elif not _is_user_error(exc) and type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 300 else text[:299] + "…"


def _is_user_error(exc: BaseException) -> bool:
    from ..errors import SwamlaError

    return isinstance(exc, SwamlaError)
