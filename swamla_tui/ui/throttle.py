"""One throttled hand-over from a worker thread to the UI thread (chat and batch).

A worker produces far more updates than a terminal can show (hundreds of tokens a
second, thousands of batch results); repainting on each would freeze the screen. The
worker `push`es items into a locked list and nothing else; a timer on the UI thread
hands everything pushed since the last tick to `drain`, at most `REFRESH_HZ` times a
second, whatever the rate of the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from textual.message_pump import MessagePump
from textual.timer import Timer

__all__ = ["REFRESH_HZ", "ThrottledBuffer"]

REFRESH_HZ = 30
T = TypeVar("T")


class ThrottledBuffer(Generic[T]):
    """Items from any thread, drained on the owner's thread by a paused-when-idle timer.

    Create it in the owner's ``on_mount`` (the timer needs a running app). `start` when
    a worker begins, `stop` when it has ended (after a last `flush`). `drain` is called
    on every tick, also with an empty list, so the owner can update live figures.
    """

    def __init__(
        self, owner: MessagePump, drain: Callable[[list[T]], None], *, hz: float = REFRESH_HZ
    ) -> None:
        self._drain = drain
        self._lock = threading.Lock()
        self._items: list[T] = []
        self._timer: Timer = owner.set_interval(1 / hz, self.flush, pause=True)

    def push(self, item: T) -> None:
        """Thread-safe: queue `item` for the next tick."""
        with self._lock:
            self._items.append(item)

    def flush(self) -> None:
        """Hand everything queued so far to `drain` (UI thread only)."""
        with self._lock:
            items, self._items = self._items, []
        self._drain(items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def start(self) -> None:
        self._timer.resume()

    def stop(self) -> None:
        self._timer.pause()
