"""Stop strings: the one implementation, used by streams and batch rows alike.

Text arrives in pieces; a stop string may straddle two pieces, so the tail that could be
the start of a stop string is held back until the next piece decides it.
"""

from __future__ import annotations

from collections.abc import Sequence


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing chars of `text` could be the start of a stop string."""
    hold = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                hold = max(hold, n)
                break
    return hold


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest occurrence of any stop string in `text`, else None."""
    hits = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


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
