"""Model B of an A/B comparison in the app: ``--compare B`` and ``/compare [PATH]``.

`SecondModel.load` loads B in a daemon thread (a checkpoint read cannot be interrupted,
and quitting must not wait for it), which reports with messages like A's load with the CLI's `AppOptions.load_second`, which
refuses first when A and B would not both fit in memory; then `check_compatible`
refuses a different vocabulary or tokenizer. Success or failure comes back to the UI
thread as one notice (an error is one line); the app and its batch view keep working
with A alone. Both models stay loaded.

``/compare`` (`compare_last`) regenerates the last reply with B from the same history
(the turns before it, fitted by the send-time rule), the same sampling settings and seed,
and shows it under A's as a second reply marked with B's name. The conversation keeps A's
reply: B's answer is shown, never sent back as history. B answers through the chat's one
reply pipeline (`ReplyController.launch`, ``replying == "B"``): the chat counts as
generating, a message to A is held, and Esc or Ctrl+C stops B as it stops A's reply, so
two generations never share the device.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ...base.errors import one_line
from ...batch.compare import check_compatible
from ...chat.session import plan_turn
from ...protocols import Model, ReplyStream
from ..messages import GenerationDone, LoadFailed, LoadProgress, ModelLoaded

if TYPE_CHECKING:  # pragma: no cover
    from ..screens.chat import ChatScreen
    from ..widgets.chat_message import ChatMessage

__all__ = ["SecondModel", "model_name"]


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
        self._loading: tuple[ChatMessage, Callable[[bool], None] | None] | None = None
        """B's load notice and what runs after the load, while B loads."""
        self._answer_widget: tuple[ChatMessage, Callable[[str], str]] | None = None
        """B's reply being streamed and its format's cut, while B answers."""

    @property
    def answering(self) -> bool:
        """B answers ``/compare`` (through the chat's one reply pipeline)."""
        return self.screen.replying == "B"

    @property
    def name(self) -> str:
        return model_name(self.lm, self.source or "B")

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
        self._loading = (notice, then)
        post = screen.post_message

        def progress(text: str) -> None:
            post(LoadProgress(f"B: {text}", second=True))

        def target() -> None:
            """The load thread: reports with messages (`second=True`) only."""
            try:
                lm = load_second(first, source, progress)
                check_compatible(
                    first,
                    lm,
                    names=(f"A ({model_name(first)})", f"B ({model_name(lm, source)})"),
                )
            except BaseException as exc:  # noqa: BLE001 - one line in the chat, A goes on
                post(LoadFailed(one_line(exc), second=True))
                return
            post(ModelLoaded(lm, second=True))

        threading.Thread(target=target, name="swamla-load-b", daemon=True).start()

    def progress(self, text: str) -> None:
        """`LoadProgress` of B: its notice shows it."""
        if self._loading is not None:
            self._loading[0].set_text(text)

    def loaded(self, lm: Model | None, error: str | None) -> None:
        """`ModelLoaded` (`lm`) or `LoadFailed` (`error`) of B."""
        if self._loading is None:
            return
        (notice, then), self._loading = self._loading, None
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
        params = screen.params.copy()
        cut = history.chat_format.cut_reply
        got: list[str] = []

        def show(pieces: list[str]) -> None:
            if pieces:
                got.extend(pieces)
                widget.set_text(cut("".join(got)))

        def open_stream() -> ReplyStream:
            """Worker thread: fit the history by the send-time rule, then stream."""
            plan = plan_turn(
                history,
                last.user,
                lambda t: len(lm.encode(t)),
                max_length=int(lm.max_length),
                max_new_tokens=int(params.max_new_tokens),
            )
            return lm.stream(plan.prompt, params, stop=history.chat_format.stop)

        self._answer_widget = (widget, cut)
        screen.reply.launch("B", show, open_stream)

    def answered(self, message: GenerationDone) -> None:
        """B's answer ended (after `ReplyController.ended`): mark it with B's name."""
        if self._answer_widget is None:
            return
        (widget, cut), self._answer_widget = self._answer_widget, None
        if message.error is not None:
            widget.remove()
            self.screen.add_notice(f"/compare: B failed: {message.error}", error=True)
            return
        stream = message.stream
        stopped = self.screen.reply.cancel.is_set()
        reason = "cancelled" if stopped else (stream.finish_reason if stream else None)
        widget.set_text(cut(message.text))
        note = {"length": " · max tokens reached", "cancelled": " · stopped"}.get(reason or "", "")
        widget.mark(f"B · {self.name}{note}", stopped=reason == "cancelled")
