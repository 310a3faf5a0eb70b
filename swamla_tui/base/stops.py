"""Stop strings (pure Python): where one ends a text, and how much to hold back.

A streamed reply must never show a stop string, not even its first characters before the
rest arrives; so a stream emits only text that cannot be the start of one (`held_back`)
and cuts at the first full match (`cut_at_stop`). The chat's `cut_reply`, the test fakes
and the engine's stream share these.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["StopText", "cut_at_stop", "first_stop", "held_back"]


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest occurrence of any stop string in `text`, else None."""
    hits = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could be the start of a stop string."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return hold


class StopText:
    """Accumulates text pieces; releases what cannot be part of a stop string.

    `push(piece)` returns the text that is now certain; once a stop string is found,
    `stopped` is True and `text` ends right before it.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.text = ""
        self.stopped = False
        self._pending = ""

    def push(self, piece: str, *, final: bool = False) -> str:
        if self.stopped:
            return ""
        self._pending += piece
        idx = first_stop(self._pending, self.stops)
        if idx is not None:
            out, self._pending, self.stopped = self._pending[:idx], "", True
        else:
            hold = 0 if final else held_back(self._pending, self.stops)
            out = self._pending[: len(self._pending) - hold]
            self._pending = self._pending[len(out) :]
        self.text += out
        return out

    def finish(self, piece: str = "") -> str:
        """The last piece: nothing is held back any more."""
        return self.push(piece, final=True)
