"""The inspector's details panel: the focused token's figures and its alternatives.

Shown under the chat while a token is hovered or inspected: the token's probability
under the sampling distribution actually used and under the model's raw softmax, the
entropy at that step, and the top alternatives (numbered: 1-5 or Enter picks one and
the reply is regenerated from there). Token texts are shown with `repr`, so blanks and
newlines are visible and no control character reaches the terminal.

For an MoE or Engram model the panel also shows, per MoE layer, the routed experts the
router chose at the step that produced the token (its input was the token before) with
their weights, best first, and the router's entropy; and each Engram layer's gate value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from ...base.experts import TokenRouting
from ...base.safe_text import visible
from ...chat.token_tree import PROB_BINS, Alternative, Step, fmt_prob

__all__ = [
    "TokenDetails",
    "TokenView",
    "details_text",
    "piece_bytes",
    "routing_text",
    "token_label",
]

HINT = "←/→ token · ↑/↓ + Enter or 1-5: branch from here · Esc: back to the input · /undo"


def shown_token(text: str) -> str:
    """A token's text quoted, blanks and controls visible, on one line."""
    return visible(repr(text))


def _byte_level_table() -> dict[str, int]:
    """GPT-2 byte-level BPE: the printable character that stands for each byte in a
    token's string (printable Latin-1 bytes stand for themselves, the others are moved
    to U+0100 onwards, in byte order)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {chr(b): b for b in keep}
    moved = (b for b in range(256) if b not in table.values())
    table.update({chr(0x100 + n): b for n, b in enumerate(moved)})
    return table


_BYTE_LEVEL = _byte_level_table()
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def piece_bytes(piece: str | None) -> bytes | None:
    """The bytes behind a tokenizer's token string: SentencePiece byte fallback
    (``<0xE2>``) or byte-level BPE characters; None when the string is neither."""
    if not piece:
        return None
    if m := _BYTE_FALLBACK.fullmatch(piece):
        return bytes([int(m.group(1), 16)])
    if all(c in _BYTE_LEVEL for c in piece):
        return bytes(_BYTE_LEVEL[c] for c in piece)
    return None


def token_label(text: str, token: int, piece: str | None = None) -> str:
    """What the panel shows for a token: its text quoted, or, when the token alone is
    an incomplete UTF-8 sequence (decodes to U+FFFD), its bytes and id (every such
    token would otherwise show as the same replacement character)."""
    if "\ufffd" not in text:
        return shown_token(text)
    raw = piece_bytes(piece)
    if raw is None:
        return f"<bytes> #{token}"
    return f"<0x{raw.hex(' ').upper().replace(' ', ' 0x')}> #{token}"


@dataclass(frozen=True)
class TokenView:
    """What the panel shows for one token (texts already labelled: `token_label`)."""

    index: int
    total: int
    text: str
    step: Step
    alternatives: Sequence[tuple[Alternative, str]]
    selected: int
    inspecting: bool


class TokenDetails(Static):
    """Hidden until `show`; `clear` hides it again."""

    DEFAULT_CSS = """
    TokenDetails {
        height: auto;
        max-height: 16;
        padding: 0 1;
        margin: 0 1;
        border-top: hkey $accent;
        background: $boost;
        display: none;
    }
    TokenDetails.-shown { display: block; }
    Tooltip { max-width: 60; }
    """
    SCOPED_CSS = False  # the hover details are a tooltip: room for their table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.view: TokenView | None = None

    def show(self, view: TokenView) -> None:
        self.view = view
        self.update(details_text(view))
        self.add_class("-shown")

    def clear(self) -> None:
        self.view = None
        self.remove_class("-shown")


def details_text(v: TokenView) -> Text:
    """The panel's text (also the tooltip of a hovered token)."""
    s = v.step
    out = Text(end="")
    out.append(f"Token {v.index + 1} of {v.total}  ", style="bold")
    out.append(visible(v.text), style="bold")
    out.append("\n" if not v.inspecting else "   ")  # the tooltip is narrow
    out.append(
        f"sampled {fmt_prob(s.prob)}   model {fmt_prob(s.raw_prob)}"
        f"   entropy {s.entropy:.2f} nats\n"
    )
    out.append("     token               sampled    model\n", style="dim")
    for n, (alt, text) in enumerate(v.alternatives):
        mark = "▶" if v.inspecting and n == v.selected else " "
        line = (
            f"{mark} {n + 1}  {visible(text)[:18]:<18}  "
            f"{fmt_prob(alt.prob):>8} {fmt_prob(alt.raw_prob):>8}"
        )
        style = "reverse" if v.inspecting and n == v.selected else ""
        out.append(line, style=style)
        out.append("  ← this token\n" if alt.token == s.token else "\n")
    if not v.inspecting:  # the hover tooltip: short
        out.append("click: inspect, and branch from a token", style="dim")
        return out
    if s.routing is not None:
        out.append_text(routing_text(s.routing))
    edges = " / ".join(f"{100 * e:g}%" for e in PROB_BINS)
    scale = f"   (scale {edges}; underlined: below {100 * PROB_BINS[0]:g}%)"
    out.append(HINT + scale, style="dim")
    return out


def routing_text(r: TokenRouting, shown: int = 8) -> Text:
    """One line per MoE layer (experts:weight, best first; entropy) and the Engram gates."""
    out = Text(end="")
    for lr in r.moe:
        out.append(f"MoE layer {lr.layer:<3}", style="bold")
        cells = [f"{e}:{w:.2f}" for e, w in zip(lr.experts[:shown], lr.weights, strict=False)]
        more = f" +{len(lr.experts) - shown}" if len(lr.experts) > shown else ""
        out.append(" " + " ".join(cells) + more)
        out.append(f"   entropy {lr.entropy:.2f}\n", style="dim")
    if r.engram:
        out.append("Engram gate  ", style="bold")
        out.append("   ".join(f"layer {layer} {g:.3f}" for layer, g in r.engram) + "\n")
    return out
