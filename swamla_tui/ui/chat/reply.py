"""The chat's one reply pipeline: A's reply, an inspector branch or B's ``/compare`` answer.

One generation at a time (`ChatScreen.replying` says whose), all through `launch`: a
worker of the ``reply`` group opens the stream and pushes its pieces into one
`ThrottledBuffer`, whose timer hands them to the generation's `show` on the UI thread;
the plan, the stream and the end reach the screen as messages (`TurnPlanned`,
`ReplyStarted`, `GenerationDone`), whose handlers call `planned`, `started`, `ended` and
the owner's end (`done` here for A's reply). So every attribute below changes on the UI
thread only; the worker reads nothing but its arguments and the cancel event. `stop`
(Esc, Ctrl+C, leaving) cancels the group, whoever generates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.message import Message
from textual.worker import get_current_worker

from ...base.errors import one_line
from ...base.timings import ReplyTimings
from ...chat.session import TurnPlan, dropped_notice, plan_turn, truncated_notice
from ...protocols import ChatModel, ReplyStream
from ..messages import GenerationDone, ReplyStarted, TurnPlanned
from ..throttle import ThrottledBuffer
from ..widgets.chat_message import ChatMessage

if TYPE_CHECKING:  # pragma: no cover
    from ..screens.chat import ChatScreen

__all__ = ["FINISH_NOTES", "GROUP", "ReplyController"]

FINISH_NOTES = {"length": "max tokens reached", "cancelled": "stopped"}
CACHE_KEY = "chat"
"""The chat's prompt cache (`LoadedModel.prompt_cache`): A's replies and branches share it."""
GROUP = "reply"
"""The worker group of every generation in the chat (Esc cancels it)."""

Show = Callable[[list[str]], None]
Opener = Callable[[], ReplyStream | None]


class ReplyController:
    """The generation in progress (if any) of `screen`'s chat, and A's reply itself."""

    def __init__(self, screen: ChatScreen) -> None:
        self.screen = screen
        self.stream: ReplyStream | None = None
        self.cancel = threading.Event()
        self.raw = ""
        self.widget: ChatMessage | None = None
        self.user_widget: ChatMessage | None = None
        self.user_text = ""
        self._show: Show = self._show_reply
        self.last_timings: ReplyTimings | None = None
        """The last finished reply's (A's or a branch's) figures: ``/stats``."""

    @property
    def generating(self) -> bool:
        """A's reply (or an inspector branch) is being generated."""
        return self.screen.replying in ("A", "branch")

    def mount(self) -> None:
        """Create the buffer (needs the running app: call from ``on_mount``)."""
        self.buffer: ThrottledBuffer[str] = ThrottledBuffer(self.screen, self._drain)

    # -- the pipeline (UI thread) --------------------------------------------------------

    def launch(self, who: str, show: Show, open_stream: Opener) -> None:
        """Generate for `who` ("A", "branch", "B"): `open_stream` runs in the worker (None:
        nothing to generate), `show` gets the new pieces at most REFRESH_HZ times a second."""
        self.buffer.clear()
        self.cancel.clear()
        self.stream = None
        self._show = show
        self.screen.replying = who
        self.buffer.start()
        work = partial(_generate, self.screen.post_message, open_stream, self.buffer, self.cancel)
        self.screen.run_worker(work, thread=True, exclusive=True, group=GROUP, exit_on_error=False)

    def started(self, stream: ReplyStream) -> None:
        if self.screen.replying:
            self.stream = stream
            if self.cancel.is_set():
                stream.cancel()

    def ended(self) -> None:
        """`GenerationDone` arrived: the last pieces shown, the timer paused."""
        self.buffer.flush()
        self.buffer.stop()
        self.stream = None

    def stop(self) -> None:
        """Stop the generation within one token (the partial text is kept)."""
        self.cancel.set()
        if self.stream is not None:
            self.stream.cancel()
        screen = self.screen
        screen.workers.cancel_group(screen, GROUP)

    def _drain(self, pieces: list[str]) -> None:
        """The new text, and A's live figures (on every tick, also with no new piece)."""
        self._show(pieces)
        stream, lm = self.stream, self.screen.lm
        if self.generating and stream is not None and lm is not None:
            bar = self.screen.status_bar
            if stream.tokens_per_second:
                bar.set_speed(stream.tokens_per_second, live=True)
            turns_out = self.screen.conversation.context_start  # as the gauge counts them
            bar.set_context(stream.context_tokens, int(lm.max_length), turns_out)

    def finished(self, stream: ReplyStream | None) -> None:
        """A's reply or a branch ended: the speed shown and ``/stats`` are now this one's
        (cleared when it made no measurable rate: a stop after one token, a failure)."""
        timings = stream.timings if stream is not None else None
        self.last_timings = timings
        rate = timings.decode_tok_s if timings is not None else 0.0
        self.screen.status_bar.set_speed(rate or None)

    # -- A's reply -------------------------------------------------------------------------

    def start(self, lm: ChatModel, text: str) -> None:
        screen = self.screen
        self.user_widget = screen.chat.add_message("user", text)
        self.widget = screen.chat.add_message("assistant")
        self.widget.set_streaming(True)
        screen.chat.anchor()
        self.user_text = text
        self.raw = ""
        conversation, params, post = screen.session.snapshot(), screen.params, screen.post_message

        def open_stream() -> ReplyStream:
            """Worker thread: tokenize and trim the copy of the history, then stream."""
            plan = plan_turn(
                conversation,
                text,
                lambda t: len(lm.encode(t)),
                max_length=int(lm.max_length),
                max_new_tokens=int(params.max_new_tokens),
            )
            post(TurnPlanned(plan))
            return lm.stream(
                plan.prompt, params, stop=conversation.chat_format.stop, cache_key=CACHE_KEY
            )

        self.launch("A", self._show_reply, open_stream)

    def _show_reply(self, pieces: list[str]) -> None:
        if pieces and self.widget is not None:
            self.raw += "".join(pieces)
            self.widget.set_text(self.screen.conversation.chat_format.cut_reply(self.raw))

    def planned(self, plan: TurnPlan) -> None:
        self.screen.session.trim_to(plan.context_start)
        if plan.dropped:  # the total out, as the status bar's "(N turns out)" says
            self.screen.add_notice(dropped_notice(plan.context_start))
        if plan.truncated_to is not None:
            self.screen.add_notice(truncated_notice(plan.prompt_tokens, plan.truncated_to))

    def done(self, message: GenerationDone) -> None:
        """A's reply ended (after `ended`): record the turn, or give the message back."""
        screen = self.screen
        stream = message.stream
        self.raw = message.text or self.raw
        reply, user = self.widget, self.user_widget
        reason = stream.finish_reason if stream is not None else None
        stopped = self.cancel.is_set() or reason == "cancelled"
        if message.error is not None:
            screen.status_bar.status = "Generation failed"
            for widget in (reply, user):
                if widget is not None:
                    widget.remove()
            text = f"Generation failed: {message.error}"
            box = screen.prompt_input
            if not box.text:  # give the message back so it can be sent again
                box.load_text(self.user_text)
                box.move_cursor(box.document.end)
                text += " — your message is back in the input"
            screen.add_notice(text, error=True)
        else:
            turn = screen.session.finish_turn(self.user_text, self.raw, stopped=stopped)
            if reply is not None:
                note = "stopped" if stopped else FINISH_NOTES.get(reason or "", "")
                reply.set_text(turn.assistant)
                reply.mark(note, stopped=stopped)
                if user is not None:
                    screen.turn_widgets.append((user, reply))
            screen.status_bar.status = "Stopped" if stopped else "Ready"
            screen.update_context()  # the gauge: what the next message will carry
        self.widget = self.user_widget = None


def _generate(
    post: Callable[[Message], object],
    open_stream: Opener,
    buffer: ThrottledBuffer[str],
    cancel: threading.Event,
) -> None:
    """Worker thread: open the stream, push its pieces; report with messages (never
    assigns state). A set `cancel`, or the worker cancelled, stops it within one token."""
    worker = get_current_worker()
    stream: ReplyStream | None = None
    parts: list[str] = []
    try:
        stream = open_stream()
        if stream is not None:
            post(ReplyStarted(stream))
            if cancel.is_set():
                stream.cancel()
            for piece in stream:
                parts.append(piece)
                buffer.push(piece)
                if cancel.is_set() or worker.is_cancelled:
                    stream.cancel()
    except BaseException as exc:  # noqa: BLE001 - shown as a notice, history survives
        post(GenerationDone(stream, "".join(parts), one_line(exc)))
        return
    post(GenerationDone(stream, "".join(parts)))
