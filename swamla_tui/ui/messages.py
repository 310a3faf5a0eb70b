"""Messages posted from worker threads to the chat screen (post_message is thread-safe).

Workers (and the raw threads that read checkpoints) report through these and never
assign state themselves: the handlers run on the UI thread, which owns every piece of it.
`second` marks model B's load (``--compare``, ``/compare PATH``).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from ..chat.session import TurnPlan
from ..protocols import Model, ReplyStream


@dataclass
class LoadProgress(Message):
    text: str
    second: bool = False


@dataclass
class ModelLoaded(Message):
    lm: Model
    second: bool = False


@dataclass
class LoadFailed(Message):
    reason: str
    second: bool = False


@dataclass
class ContextCounted(Message):
    """Tokens the next message's history takes, and the turns left out of it (counted in
    a worker by the send-time rule, `swamla_tui.chat.session.context_usage`)."""

    tokens: int
    turns_out: int = 0


@dataclass
class TurnPlanned(Message):
    """The worker fitted the history and built the prompt (`plan.dropped` turns left)."""

    plan: TurnPlan


@dataclass
class ReplyStarted(Message):
    """The reply stream exists: the UI can show its speed and stop it."""

    stream: ReplyStream


@dataclass
class ScoringProgress(Message):
    """``/ppl``: how far the scoring is (the text of its notice)."""

    text: str


@dataclass
class ScoringDone(Message):
    """``/ppl`` ended: the results table, or one error line (`error`)."""

    text: str
    error: bool = False


@dataclass
class GenerationDone(Message):
    """The generation worker ended: normally, cancelled, or with `error` (one line)."""

    stream: ReplyStream | None
    text: str
    error: str | None = None
