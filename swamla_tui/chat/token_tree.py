"""The token-probability inspector's state, without a screen: per-reply branch trees.

Pure Python (no torch, no textual). For one assistant reply it holds the generated ids,
what the engine recorded for each (`Step`, the engine's `TokenLogprobs`: the token's probability under the sampling
distribution actually used and under the model's raw softmax, the entropy, the top
alternatives of both), and the branches made from it: choosing alternative ``a`` at
token ``i`` of the shown branch starts a child branch ``tokens[:i] + [a]`` whose
continuation the app then generates; `ReplyTree.undo` steps back to the parent branch
(the child stays in the tree, so nothing generated is lost). The chat history always
carries the branch shown (`ReplyTree.current`).

Token boundaries: a branch continues from *ids*, never from re-tokenized text. The
continuation's prompt is the same prompt text (encoded as for the first reply, so the
same ids) followed by the branch's prefix ids (`lm.stream(..., prefix_ids=...)`); the
reply text of a branch is decoded from its ids (`token_pieces`, the stream's own
incremental rule), so a BPE merge across the fork point can never shift a boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ..base.errors import SwamlaError
from ..base.stops import cut_at_stop
from ..base.tokens import TokenLogprobs, TokenRecord

__all__ = [
    "PROB_BINS",
    "TOP_N",
    "Alternative",
    "Branch",
    "InspectError",
    "ReplyTree",
    "Step",
    "TokenRecord",
    "alternatives",
    "clip_pieces",
    "fmt_prob",
    "prob_bin",
    "reply_text",
    "token_pieces",
]

TOP_N = 5
"""Alternatives recorded and offered per token (`lm.stream(..., logprobs=TOP_N)`)."""

PROB_BINS = (0.1, 0.25, 0.5, 0.9)
"""Colour scale edges: bin 0 is below 10% (also underlined), bin 4 is 90% and above."""

_WINDOW = 8  # ids decoded together at most, as the stream's `IncrementalDecoder`


class InspectError(SwamlaError):
    """An inspector action that cannot be done (one line)."""


Step = TokenLogprobs
"""A recorded token of a branch: the engine's own record type (`base.tokens`), by the
inspector's name for it."""


@dataclass(frozen=True)
class Alternative:
    """A token the model could have produced at a step; None: outside what was recorded."""

    token: int
    prob: float | None
    raw_prob: float | None


def alternatives(step: Step, n: int = TOP_N) -> list[Alternative]:
    """The sampling distribution's best tokens, then the raw distribution's (greedy
    decoding samples from a one-hot distribution: its alternatives come from the raw one)."""
    samp = {i: math.exp(v) for i, v in step.top if v > -math.inf}
    raw = {i: math.exp(v) for i, v in step.raw_top}
    # The drawn token's own figures are always recorded, even when a repetition penalty
    # put it in the sampling top but out of the raw top (its "model" cell was blank).
    if not math.isnan(step.raw_logprob):
        raw.setdefault(step.token, step.raw_prob)
    if samp and step.logprob > -math.inf:
        samp.setdefault(step.token, step.prob)
    order = [i for i, _ in step.top if i in samp] + [i for i, _ in step.raw_top]
    out: list[Alternative] = []
    for tok in order:
        if len(out) >= n:
            break
        if all(a.token != tok for a in out):
            out.append(Alternative(tok, samp.get(tok, 0.0 if samp else None), raw.get(tok)))
    return out


def prob_bin(p: float) -> int:
    """0 (below 10%) .. 4 (90% and above); NaN (not known) counts as 4: not highlighted."""
    if math.isnan(p):
        return len(PROB_BINS)
    return sum(1 for edge in PROB_BINS if p >= edge)


def fmt_prob(p: float | None) -> str:
    """``"42.0%"``, ``"<0.1%"``; ``"—"`` when not known."""
    if p is None or math.isnan(p):
        return "—"
    if 0 < p < 0.001:
        return "<0.1%"
    return f"{100 * p:.1f}%"


@dataclass(eq=False)
class Branch:
    """One version of a reply: its ids, their steps, and the text recorded in the chat."""

    tokens: list[int]
    steps: list[Step]
    raw: str = ""
    """The reply text as generated (before the chat format's `cut_reply`)."""
    stopped: bool = False
    note: str = ""
    """How it finished, as the chat shows it ("max tokens reached", "stopped", "")."""
    parent: Branch | None = None
    fork: int = -1
    """Index of the chosen alternative in `tokens` (-1 for the first reply)."""
    children: list[Branch] = field(default_factory=list)


class ReplyTree:
    """The branches of one reply; `current` is the one the chat shows and sends."""

    def __init__(
        self,
        prompt: str,
        stop: Sequence[str],
        tokens: Sequence[int],
        records: Sequence[TokenRecord],
        raw: str,
        *,
        stopped: bool = False,
        note: str = "",
    ) -> None:
        if len(tokens) != len(records):
            raise InspectError(f"{len(tokens)} tokens but {len(records)} records")
        self.prompt = prompt
        """The prompt text the reply was generated from (history and cue)."""
        self.stop = tuple(stop)
        self.root = Branch(list(tokens), [Step.of(r) for r in records], raw, stopped, note)
        self.current = self.root

    @property
    def depth(self) -> int:
        """How many `undo` steps lead back to the first reply."""
        n, b = 0, self.current
        while b.parent is not None:
            n, b = n + 1, b.parent
        return n

    def fork(self, index: int, token: int) -> Branch:
        """Start a branch: the shown branch's tokens before `index`, then `token` (one of
        the step's `alternatives`). The new branch is current; its continuation is added
        with `complete` (or the branch dropped with `abandon`)."""
        cur = self.current
        if not 0 <= index < len(cur.steps):
            raise InspectError(f"no token {index + 1} in this reply ({len(cur.steps)} tokens)")
        step = cur.steps[index]
        alt = next((a for a in alternatives(step) if a.token == token), None)
        if alt is None:
            raise InspectError(f"token id {token} is not an alternative at token {index + 1}")
        picked = replace(
            step,
            token=token,
            logprob=math.log(alt.prob) if alt.prob else -math.inf,
            raw_logprob=math.log(alt.raw_prob) if alt.raw_prob else math.nan,
        )
        child = Branch(cur.tokens[:index] + [token], cur.steps[:index] + [picked])
        child.parent, child.fork = cur, index
        cur.children.append(child)
        self.current = child
        return child

    def complete(
        self,
        tokens: Sequence[int],
        records: Sequence[TokenRecord],
        raw: str,
        *,
        stopped: bool = False,
        note: str = "",
    ) -> Branch:
        """Add the generated continuation to the current branch and set its text."""
        if len(tokens) != len(records):
            raise InspectError(f"{len(tokens)} tokens but {len(records)} records")
        b = self.current
        b.tokens.extend(tokens)
        b.steps.extend(Step.of(r) for r in records)
        b.raw, b.stopped, b.note = raw, stopped, note
        return b

    def abandon(self) -> Branch:
        """Drop the current branch (its continuation failed): back to its parent."""
        b = self.current
        if b.parent is None:
            raise InspectError("the first reply cannot be dropped")
        b.parent.children.remove(b)
        self.current = b.parent
        return self.current

    def undo(self) -> Branch | None:
        """Show the parent branch again (None: the first reply is shown already)."""
        parent = self.current.parent
        if parent is None:
            return None
        self.current = parent
        return parent


def token_pieces(
    decode: Callable[[Sequence[int]], str], ids: Sequence[int], eos: int | None = None
) -> list[str]:
    """The text each id adds, by the stream's incremental rule: a short window of ids is
    decoded together and text ending in an incomplete character (U+FFFD) is held back and
    given to the id that completes it, so ``"".join(pieces)`` is the streamed text. An
    `eos` id adds nothing (the stream never shows it)."""
    pieces: list[str] = []
    start, emitted = 0, ""
    for i, tok in enumerate(ids):
        if eos is not None and tok == eos:
            pieces.append("")
            continue
        text = decode(ids[start : i + 1])
        if text.endswith("\ufffd") and i + 1 < len(ids):
            pieces.append("")
            continue
        pieces.append(text[len(emitted) :])
        emitted = text
        if i + 1 - start > _WINDOW:
            start, emitted = i + 1, ""
    return pieces


def reply_text(pieces: Sequence[str], stop: Sequence[str]) -> tuple[str, bool]:
    """The generated text of a branch (cut before the first stop string) and whether a
    stop string ended it."""
    text, hit = cut_at_stop("".join(pieces), tuple(s for s in stop if s))
    return text, hit


def clip_pieces(pieces: Sequence[str], start: int, end: int) -> list[str]:
    """Each piece cut to the characters ``[start, end)`` of ``"".join(pieces)`` (the part
    the chat shows: after a stop string, and blanks around the reply, nothing)."""
    out: list[str] = []
    pos = 0
    for p in pieces:
        a, b = max(pos, start), min(pos + len(p), end)
        out.append(p[a - pos : b - pos] if a < b else "")
        pos += len(p)
    return out
