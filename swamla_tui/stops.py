"""Stop strings (pure Python): where one ends a text, and how much to hold back.

A streamed reply must never show a stop string, not even its first characters before the
rest arrives; so a stream emits only text that cannot be the start of one (`held_back`)
and cuts at the first full match (`cut_at_stop`). The chat's `cut_reply`, the test fakes
and the engine's stream share these.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["cut_at_stop", "held_back"]


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could be the start of a stop string."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return hold
