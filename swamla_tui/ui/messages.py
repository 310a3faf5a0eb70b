"""Messages posted from worker threads to the app (Textual's post_message is thread-safe).

Workers report through these and never assign app attributes themselves: the handlers
run on the UI thread, which owns every piece of app state.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from ..protocols import Model, ReplyStream
from ..session import TurnPlan


@dataclass
class LoadProgress(Message):
    text: str


@dataclass
class ModelLoaded(Message):
    lm: Model


@dataclass
class LoadFailed(Message):
    reason: str


@dataclass
class ContextCounted(Message):
    """Tokens the conversation so far takes (counted in a worker)."""

    tokens: int


@dataclass
class TurnPlanned(Message):
    """The worker fitted the history and built the prompt (`plan.dropped` turns left)."""

    plan: TurnPlan


@dataclass
class ReplyStarted(Message):
    """The reply stream exists: the UI can show its speed and stop it."""

    stream: ReplyStream


@dataclass
class GenerationDone(Message):
    """The generation worker ended: normally, cancelled, or with `error` (one line)."""

    stream: ReplyStream | None
    text: str
    error: str | None = None
