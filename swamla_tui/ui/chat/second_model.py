"""Model B of an A/B comparison in the app: ``--compare B`` and ``/compare [PATH]``.

`SecondModel.load` loads B in a daemon thread (a checkpoint read cannot be interrupted,
and quitting must not wait for it) with the CLI's `AppOptions.load_second`, which
refuses first when A and B would not both fit in memory; then `check_compatible`
refuses a different vocabulary or tokenizer. Success or failure comes back to the UI
thread as one notice (an error is one line); the app and its batch view keep working
with A alone. Both models stay loaded.

``/compare`` (`compare_last`) regenerates the last reply with B from the same history
(the turns before it, fitted by the send-time rule), the same sampling settings and seed,
and shows it under A's as a second reply marked with B's name. The conversation keeps A's
reply: B's answer is shown, never sent back as history. While B answers, the app counts as
generating (`SwamlaApp.generating`): a message to A is held, and Esc or Ctrl+C stops B
(`stop`) as it stops A's reply, so two generations never share the device.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ...base.errors import one_line
from ...batch.compare import check_compatible
from ...chat.session import plan_turn
from ...protocols import Model, ReplyStream

if TYPE_CHECKING:  # pragma: no cover
    from ..screens.chat import ChatScreen
    from ..widgets.chat_message import ChatMessage

__all__ = ["SecondModel", "model_name"]

# Seconds between updates of B's streamed reply (the worker calls back at most this often).
REFRESH_EVERY = 1 / 15


def model_name(lm: object, fallback: str = "") -> str:
    """The checkpoint's file or folder name, for labels (``tiny.pt``)."""
    source = str(getattr(lm, "source", "") or fallback)
    return Path(source).name or source


class SecondModel:
    """Model B of `screen`: `lm` once loaded, `error` (one line) when its load failed."""

    def __init__(self, screen: ChatScreen) -> None:
        self.screen = screen
        self.lm: Model | None = None
        self.source: str | None = None
        self.error: str | None = None
        self.loading = False
        self.answering = False
        self.cancel = threading.Event()
        self._stream: ReplyStream | None = None

    @property
    def name(self) -> str:
        return model_name(self.lm, self.source or "B")

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        """From a worker thread: run `fn(*args)` on the UI thread, unless the chat is gone."""
        self.screen.call_from_worker(fn, *args)

    # -- loading -----------------------------------------------------------------------

    def load(self, source: str, then: Callable[[bool], None] | None = None) -> None:
        """Load `source` as B (replacing any); `then(ok)` runs on the UI thread after."""
        screen = self.screen
        load_second = screen.options.load_second
        first = screen.lm
        if first is None or load_second is None or self.loading or self.answering:
            if first is None:
                why = screen.load_failed or "The model is still loading."
            elif load_second is None:
                why = "No second model can be loaded here (start with --compare B)."
            else:
                why = "The second model is busy: wait for it, then try again."
            screen.add_notice(why, error=load_second is None)
            if then is not None:
                then(False)
            return
        self.lm, self.error, self.source, self.loading = None, None, source, True
        notice = screen.add_notice(f"Loading B ({model_name(None, source)})…")

        def target() -> None:
            try:
                lm = load_second(first, source, lambda t: self._call(notice.set_text, f"B: {t}"))
                check_compatible(
                    first,
                    lm,
                    names=(f"A ({model_name(first)})", f"B ({model_name(lm, source)})"),
                )
            except BaseException as exc:  # noqa: BLE001 - one line in the chat, A goes on
                self._call(self._loaded, None, one_line(exc), notice, then)
                return
            self._call(self._loaded, lm, None, notice, then)

        threading.Thread(target=target, name="swamla-load-b", daemon=True).start()

    def _loaded(
        self,
        lm: Model | None,
        error: str | None,
        notice: ChatMessage,
        then: Callable[[bool], None] | None,
    ) -> None:
        screen = self.screen
        self.loading = False
        self.lm, self.error = lm, error
        if lm is None:
            notice.remove()
            screen.add_notice(f"Could not load B: {error}", error=True)
            screen.notify(f"Could not load B: {error}", severity="error", timeout=8)
        else:
            notice.set_text(
                f"Loaded B: {lm.summary()}. /compare regenerates the last reply with it; "
                "/batch FILE runs every prompt on both."
            )
        if then is not None:
            then(lm is not None)

    # -- /compare ----------------------------------------------------------------------

    def compare_last(self, path: str | None) -> None:
        """``/compare [PATH]``: (load PATH as B, then) answer the last message with B."""
        screen = self.screen
        if screen.busy():  # A or B is answering
            return
        if path:
            self.load(path, then=lambda ok: self._answer() if ok else None)
        elif self.loading:
            screen.add_notice("B is still loading: /compare again once it is loaded.")
        elif self.lm is None:
            why = f"B did not load ({self.error.rstrip('.')})" if self.error else "No second model"
            screen.add_notice(f"{why}: start with --compare B or type /compare PATH.", error=True)
        else:
            self._answer()

    def _answer(self) -> None:
        """UI thread: B's reply to the last message, streamed into a new message."""
        screen, lm = self.screen, self.lm
        history = screen.session.snapshot()
        last = history.undo()
        if lm is None or last is None:
            screen.add_notice("No reply to compare yet: send a message first.", error=True)
            return
        screen.add_notice(
            f"/compare: B ({self.name}) answers your last message; the history keeps A's reply."
        )
        widget = screen.chat.add_message("assistant")
        widget.set_streaming(True)
        screen.chat.anchor()
        self.answering = True
        self.cancel.clear()
        cancel = self.cancel
        screen.refresh_bindings()  # Esc: Stop
        params = screen.params.copy()
        cut = history.chat_format.cut_reply

        def work() -> None:
            text, error, reason = "", None, None
            try:
                plan = plan_turn(
                    history,
                    last.user,
                    lambda t: len(lm.encode(t)),
                    max_length=int(lm.max_length),
                    max_new_tokens=int(params.max_new_tokens),
                )
                stream = lm.stream(plan.prompt, params, stop=history.chat_format.stop)
                self._stream = stream
                if cancel.is_set():
                    stream.cancel()
                shown = time.monotonic()
                for piece in stream:
                    text += piece
                    if time.monotonic() - shown >= REFRESH_EVERY:
                        shown = time.monotonic()
                        self._call(widget.set_text, cut(text))
                    if cancel.is_set() or not screen.is_running:
                        stream.cancel()
                reason = "cancelled" if cancel.is_set() else stream.finish_reason
            except BaseException as exc:  # noqa: BLE001 - one line in the chat
                error = one_line(exc)
            self._call(self._answered, widget, cut(text), reason, error)

        threading.Thread(target=work, name="swamla-compare", daemon=True).start()

    def stop(self) -> None:
        """Esc / Ctrl+C while B answers: B stops at its next token (the text so far stays)."""
        self.cancel.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def _answered(
        self, widget: ChatMessage, text: str, reason: str | None, error: str | None
    ) -> None:
        self.answering, self._stream = False, None
        self.screen.refresh_bindings()
        if error is not None:
            widget.remove()
            self.screen.add_notice(f"/compare: B failed: {error}", error=True)
            return
        widget.set_text(text)
        stopped = reason == "cancelled"
        note = {"length": " · max tokens reached", "cancelled": " · stopped"}.get(reason or "", "")
        widget.mark(f"B · {self.name}{note}", stopped=stopped)
