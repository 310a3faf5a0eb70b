"""One reply at a time: start it, stream it into the chat, stop it, record it.

The worker (a thread) tokenizes and trims a *copy* of the conversation, opens the
stream and pushes its pieces into a `ThrottledBuffer`; the plan and the stream reach
the UI thread as messages (`TurnPlanned`, `ReplyStarted`, `GenerationDone`) whose app
handlers call `planned`, `started` and `done` here. So every attribute below changes on
the UI thread only; the worker reads nothing but its arguments and the cancel event.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING

from textual.worker import get_current_worker

from ...base.errors import one_line
from ...base.params import SamplingParams
from ...chat.conversation import Conversation
from ...chat.session import TurnPlan, dropped_notice, plan_turn
from ...protocols import ChatModel, ReplyStream
from ..messages import GenerationDone, ReplyStarted, TurnPlanned
from ..throttle import ThrottledBuffer
from ..widgets.chat_message import ChatMessage

if TYPE_CHECKING:  # pragma: no cover
    from ..screens.chat import ChatScreen

__all__ = ["ReplyController"]

FINISH_NOTES = {"length": "max tokens reached", "cancelled": "stopped"}


class ReplyController:
    """The reply in progress (if any) of `screen`'s chat."""

    def __init__(self, screen: ChatScreen) -> None:
        self.screen = screen
        self.generating = False
        self.stream: ReplyStream | None = None
        self.cancel = threading.Event()
        self.raw = ""
        self.widget: ChatMessage | None = None
        self.user_widget: ChatMessage | None = None
        self.user_text = ""

    def mount(self) -> None:
        """Create the buffer (needs the running app: call from ``on_mount``)."""
        self.buffer: ThrottledBuffer[str] = ThrottledBuffer(self.screen, self.drain)

    # -- UI thread ---------------------------------------------------------------------

    def start(self, lm: ChatModel, text: str) -> None:
        screen = self.screen
        self.user_widget = screen.chat.add_message("user", text)
        self.widget = screen.chat.add_message("assistant")
        self.widget.set_streaming(True)
        screen.chat.anchor()
        self.user_text = text
        self.raw = ""
        self.buffer.clear()
        self.cancel.clear()
        self.stream = None
        self.generating = True
        screen.status_bar.status = "Generating…"
        screen.status_bar.add_class("-busy")
        screen.refresh_bindings()
        self.buffer.start()
        work = partial(self._work, lm, screen.session.snapshot(), text, screen.params, self.cancel)
        screen.run_worker(work, thread=True, exclusive=True, group="generate", exit_on_error=False)

    def stop(self) -> None:
        """Stop the reply within one token (the partial reply is kept)."""
        self.cancel.set()
        if self.stream is not None:
            self.stream.cancel()

    def planned(self, plan: TurnPlan) -> None:
        self.screen.session.trim_to(plan.context_start)
        if plan.dropped:
            self.screen.add_notice(dropped_notice(plan.dropped))

    def started(self, stream: ReplyStream) -> None:
        if self.generating:
            self.stream = stream

    def drain(self, pieces: list[str]) -> None:
        """Show the new text (at most REFRESH_HZ times a second) and the live figures."""
        if pieces and self.widget is not None:
            self.raw += "".join(pieces)
            self.widget.set_text(self.screen.conversation.chat_format.cut_reply(self.raw))
        stream, lm = self.stream, self.screen.lm
        if stream is not None and lm is not None:
            if stream.tokens_per_second:
                self.screen.status_bar.set_speed(stream.tokens_per_second, live=self.generating)
            self.screen.status_bar.set_context(stream.context_tokens, int(lm.max_length))

    def done(self, message: GenerationDone) -> None:
        screen = self.screen
        self.buffer.flush()
        self.buffer.stop()
        stream = message.stream
        self.raw = message.text or self.raw
        reply, user = self.widget, self.user_widget
        self.generating = False
        self.stream = None
        screen.status_bar.remove_class("-busy")
        reason = stream.finish_reason if stream is not None else None
        stopped = self.cancel.is_set() or reason == "cancelled"
        if stream is not None and stream.tokens_per_second:
            screen.status_bar.set_speed(float(stream.tokens_per_second))
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
        screen.refresh_bindings()

    # -- worker thread -----------------------------------------------------------------

    def _work(
        self,
        lm: ChatModel,
        conversation: Conversation,
        user_text: str,
        params: SamplingParams,
        cancel: threading.Event,
    ) -> None:
        """Tokenize, trim the copy, stream; report with messages (never assigns state)."""
        screen, worker = self.screen, get_current_worker()
        stream: ReplyStream | None = None
        parts: list[str] = []
        try:
            plan = plan_turn(
                conversation,
                user_text,
                lambda t: len(lm.encode(t)),
                max_length=int(lm.max_length),
                max_new_tokens=int(params.max_new_tokens),
            )
            screen.post_message(TurnPlanned(plan))
            stream = lm.stream(plan.prompt, params, stop=conversation.chat_format.stop)
            screen.post_message(ReplyStarted(stream))
            if cancel.is_set():
                stream.cancel()
            for piece in stream:
                parts.append(piece)
                self.buffer.push(piece)
                if cancel.is_set() or worker.is_cancelled:
                    stream.cancel()
        except BaseException as exc:  # noqa: BLE001 - shown as a notice, history survives
            screen.post_message(GenerationDone(stream, "".join(parts), one_line(exc)))
            return
        screen.post_message(GenerationDone(stream, "".join(parts)))
