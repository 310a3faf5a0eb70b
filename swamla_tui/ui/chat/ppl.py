"""``/ppl FILE``: the perplexity of a text file under the loaded model, in a worker thread.

The file is read and scored off the event loop (`swamla_tui.runtime.perplexity`); the worker only
posts messages (`ScoringProgress`, at most every `PROGRESS_EVERY` seconds, then `ScoringDone`),
whose screen handlers update one notice (progress, then the table) or replace it with an
error line. Leaving the app cancels the run within one batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message
from textual.worker import get_current_worker

from ...base.errors import SwamlaError, one_line
from ...base.scoring import format_results, read_text_file
from ...protocols import ScoringModel
from ..messages import ScoringDone, ScoringProgress

if TYPE_CHECKING:  # pragma: no cover
    from ..screens.chat import ChatScreen
    from ..widgets.chat_message import ChatMessage

__all__ = ["PerplexityRunner"]

# Seconds between progress updates of the notice (the worker calls back at most this often).
PROGRESS_EVERY = 0.25


class PerplexityRunner:
    """One ``/ppl`` run at a time for `screen`; `cancel` is set when the app goes away."""

    def __init__(self, screen: ChatScreen) -> None:
        self.screen = screen
        self.cancel: threading.Event | None = None
        self._notice: ChatMessage | None = None

    @property
    def running(self) -> bool:
        return self.cancel is not None

    def start(self, path: str) -> None:
        screen = self.screen
        if screen.lm is None:
            screen.add_notice(screen.load_failed or "The model is still loading.")
            return
        if self.running:
            screen.add_notice("A /ppl run is already going; wait for its result.")
            return
        name = Path(path).name or path
        self._notice = screen.add_notice(f"Perplexity of {name}: reading…")
        cancel = threading.Event()
        self.cancel = cancel
        lm, post = screen.lm, screen.post_message
        screen.run_worker(
            lambda: self._work(lm, path, name, post, cancel),
            thread=True,
            group="ppl",
            exit_on_error=False,
        )

    def _work(
        self,
        lm: Any,
        path: str,
        name: str,
        post: Callable[[Message], object],
        cancel: threading.Event,
    ) -> None:
        """Worker thread: read, score, report with messages (never touches state)."""
        screen, worker = self.screen, get_current_worker()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if worker.is_cancelled or not screen.is_running:  # the app is closing
                cancel.set()
                return
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY or done >= total:
                last[0] = now
                post(ScoringProgress(f"Perplexity of {name}: {done:,}/{total:,} tokens scored…"))

        try:
            text = read_text_file(path)
            if not callable(getattr(lm, "perplexity", None)):
                raise SwamlaError("this model cannot score text")
            scorer: ScoringModel = lm
            result = scorer.perplexity(text, progress=progress, cancel=cancel)
            result = replace(result, checkpoint=Path(result.checkpoint).name or result.checkpoint)
            message, error = f"Perplexity of {name}\n{format_results([result])}", False
        except Exception as exc:  # noqa: BLE001 - one line in the chat, the app goes on
            message, error = f"/ppl {name}: {one_line(exc)}", True
        post(ScoringDone(message, error))

    def progress(self, text: str) -> None:
        """`ScoringProgress`: the notice shows it."""
        if self._notice is not None and self.running:
            self._notice.set_text(text)

    def finish(self, message: str, error: bool) -> None:
        """`ScoringDone`: show the table (or the error) where the progress notice was."""
        notice, self._notice, self.cancel = self._notice, None, None
        if notice is None:
            return
        if error:
            notice.remove()
            self.screen.add_notice(message, error=True)
        else:
            notice.set_text(message)
