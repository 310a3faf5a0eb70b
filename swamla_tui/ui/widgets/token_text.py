"""A reply's tokens coloured by probability: the Rich text the chat message renders.

Each token's piece gets the style of its probability bin (`inspect_tree.prob_bin`: the
message's ``token--p0`` .. ``token--p4`` component classes, theme colours, so the scale
reads in dark and light themes) and carries its index as Rich ``meta``, so a mouse event
over it tells the message which token is under the pointer. The lowest bin is also
underlined: the scale still reads without colour. Control characters are made visible
(`safe_text.visible`) piece by piece, never sent raw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.style import Style
from rich.text import Text

from ...base.safe_text import visible
from ...chat.token_tree import Step, prob_bin

__all__ = ["navigable", "next_token", "token_text"]


def navigable(pieces: Sequence[str]) -> list[int]:
    """Indices of the tokens that show text (held-back bytes, EOS and what lies past a
    stop string show none and are skipped by the cursor)."""
    return [i for i, p in enumerate(pieces) if p]


def next_token(pieces: Sequence[str], cursor: int, step: int) -> int:
    """The navigable token `step` places after (or, negative, before) `cursor`, clamped."""
    idx = navigable(pieces)
    if not idx:
        return cursor
    if cursor not in idx:
        return idx[-1]
    pos = min(max(idx.index(cursor) + step, 0), len(idx) - 1)
    return idx[pos]


def token_text(
    pieces: Sequence[str],
    steps: Sequence[Step],
    style_of_bin: Callable[[int], Style],
    *,
    cursor: int | None = None,
    cursor_style: Style | None = None,
) -> Text:
    """pieces[i] styled by steps[i].prob; the token at `cursor` also gets `cursor_style`.

    A cursor on a piece of blanks only (a newline) is drawn as a visible mark before it.
    """
    out = Text(end="")
    for i, (piece, step) in enumerate(zip(pieces, steps, strict=True)):
        if not piece:
            continue
        style = style_of_bin(prob_bin(step.prob)) + Style.from_meta({"token": i})
        shown = visible(piece)
        if i == cursor and cursor_style is not None:
            style += cursor_style
            if not shown.strip():
                out.append("⏎" if "\n" in shown else "·", style)
                shown = shown.lstrip(" ")
                if not shown:
                    continue
        out.append(shown, style)
    return out
