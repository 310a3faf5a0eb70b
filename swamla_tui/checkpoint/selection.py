"""Which checkpoint of a Hub repo or a training run folder to open (formats G7 §1.1, §1.2, §10).

Pure functions over names: a Hub repo is judged from its file list, a run folder from its
file names, so choosing never downloads or opens a checkpoint. Token counts are parsed to
numbers before any comparison (`2.00B` > `999M`, which a string sort gets wrong).

The rule, as the trainer's own resume code applies it: candidates fall into tiers, and
the first tier that has any candidate is the one chosen from.

- base (default): `base/checkpoint_tokens_<T>_loss_<L>/`, then the legacy root folders
  `checkpoint_tokens_<T>_loss_<L>/`; in a run folder `checkpoint_base_<P>_step<N>.pt`,
  then `checkpoint_<T>_step<N>.pt`, then `checkpoint_<N>.pt`, then any other `*.pt`.
  A repo or run with only instruct checkpoints falls back to them (last tiers), so it
  still opens; the label names the folder that was picked.
- instruct (``--instruct``): `instruct/checkpoint_pt<P>_it<I>_loss_<L>/`, then the older
  `instruct/checkpoint_tokens_<T>_loss_<L>/`, then the base tiers; in a run folder
  `checkpoint_instruct_pt<P>_it<I>_step<N>.pt`, then the base tiers.

Within a tier: `latest` = most tokens (instruct tiers: most *instruct* tokens, as the
trainer ranks them), `best_loss` = lowest loss (ties: more tokens), `nb_tok` = the token
count closest to the target (ties: more tokens). Run-folder names carry no loss, so
`best_loss` there is refused rather than guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..base.errors import CheckpointError

Strategy = Literal["latest", "best_loss"]
STRATEGIES: tuple[Strategy, ...] = ("latest", "best_loss")
WEIGHTS = "pytorch_model.bin"

_MULT = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_COUNT = r"(\d+(?:[._]\d+)?[kKmMbBtT]?)"
_LOSS = r"(\d+(?:\.\d+)?)"
_HUB = {
    "base": re.compile(rf"^base/checkpoint_tokens_{_COUNT}_loss_{_LOSS}$"),
    "instruct": re.compile(rf"^instruct/checkpoint_pt{_COUNT}_it{_COUNT}_loss_{_LOSS}$"),
    "instruct_old": re.compile(rf"^instruct/checkpoint_tokens_{_COUNT}_loss_{_LOSS}$"),
    "root": re.compile(rf"^checkpoint_tokens_{_COUNT}_loss_{_LOSS}$"),
}
_RUN = {
    "base": re.compile(rf"^checkpoint_base_{_COUNT}_step(\d+)\.pt$"),
    "instruct": re.compile(rf"^checkpoint_instruct_pt{_COUNT}_it{_COUNT}_step(\d+)\.pt$"),
    "tokens": re.compile(rf"^checkpoint_{_COUNT}_step(\d+)\.pt$"),
    "step": re.compile(r"^checkpoint_(\d+)\.pt$"),
}
# tier order per rule (kinds; see the module docstring)
_BASE_ORDER = ("base", "root", "tokens", "step", "other", "instruct", "instruct_old")
_INSTRUCT_ORDER = ("instruct", "instruct_old", "base", "root", "tokens", "step", "other")


def parse_tokens(text: str) -> float | None:
    """`2.00B` -> 2e9, `1.5M` -> 1.5e6, `750K` -> 7.5e5, `999` -> 999, `1_00B` -> 1e9
    (run-folder names replace the dot by `_`); suffixes k/m/b/t in any case. None if not
    a count."""
    m = re.fullmatch(r"\s*(\d+(?:[._]\d+)?|\.\d+)\s*([kKmMbBtT]?)\s*", text)
    if not m:
        return None
    return float(m.group(1).replace("_", ".")) * _MULT[m.group(2).lower()]


def parse_nb_tok(text: str) -> float:
    """``--nb_tok`` (`3.5B`, `500M`, `100k`, `2000`): a positive token count, or a clear error."""
    n = parse_tokens(text)
    if n is None or n <= 0:
        raise CheckpointError(
            f"--nb_tok {text!r}: not a token count (a number with an optional k, M, B or T, "
            "e.g. 3.5B or 500M)"
        )
    return n


def format_count(n: float) -> str:
    """The trainer's `format_tokens` (dot kept), for listings."""
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.0f}K"
    return f"{n:.0f}"


@dataclass(frozen=True)
class Candidate:
    """One checkpoint a repo or run folder offers.

    `path`: the Hub folder (relative, no trailing slash) or the run folder's file name.
    `tokens`: the token count its name gives (pretrain tokens for instruct names);
    `instruct_tokens`: the `_it<I>` part (instruct kinds only); None when the name has
    no count (`checkpoint_<step>.pt`, other files).
    """

    path: str
    kind: str  # a key of _HUB or _RUN, or "other"
    tokens: float | None = None
    instruct_tokens: float | None = None
    loss: float | None = None
    step: int | None = None

    @property
    def is_instruct(self) -> bool:
        return self.kind in ("instruct", "instruct_old")

    @property
    def rank_tokens(self) -> float | None:
        """The count `latest` and `--nb_tok` compare: instruct tokens for instruct tiers."""
        if self.kind == "instruct":
            return self.instruct_tokens
        return self.tokens

    def describe(self) -> str:
        """`instruct  pt 2.00B + it 50.0M  loss 2.1234` style columns (for --info)."""
        kind = "instruct" if self.is_instruct else "base"
        if self.kind == "instruct" and self.tokens is not None and self.instruct_tokens is not None:
            toks = f"pt {format_count(self.tokens)} + it {format_count(self.instruct_tokens)}"
        elif self.tokens is not None:
            toks = f"{format_count(self.tokens)} tokens"
        elif self.step is not None:
            toks = f"step {self.step}"
        else:
            toks = "-"
        loss = f"loss {self.loss:.4f}" if self.loss is not None else "loss -"
        return f"{kind:<8}  {toks:<22}  {loss}"


def hub_candidates(files: Iterable[str]) -> list[Candidate]:
    """The checkpoint folders of a repo file list (folders holding pytorch_model.bin)."""
    out: list[Candidate] = []
    for f in sorted(set(files)):
        if not f.endswith("/" + WEIGHTS):
            continue
        folder = f[: -len(WEIGHTS) - 1]
        for kind, rx in _HUB.items():
            m = rx.match(folder)
            if not m:
                continue
            g = m.groups()
            if kind == "instruct":
                pt, it = parse_tokens(g[0]), parse_tokens(g[1])
                out.append(Candidate(folder, kind, pt, it, float(g[2])))
            else:
                out.append(Candidate(folder, kind, parse_tokens(g[0]), None, float(g[1])))
            break
    return out


def run_candidates(names: Iterable[str]) -> list[Candidate]:
    """The checkpoints of a training run folder, from its `*.pt` file names (formats G7 §1.1)."""
    out: list[Candidate] = []
    for name in sorted(set(names)):
        if not name.endswith(".pt"):
            continue
        for kind, rx in _RUN.items():
            m = rx.match(name)
            if not m:
                continue
            g = m.groups()
            if kind == "instruct":
                pt, it = parse_tokens(g[0]), parse_tokens(g[1])
                out.append(Candidate(name, kind, pt, it, None, int(g[2])))
            elif kind == "step":
                out.append(Candidate(name, kind, None, None, None, int(g[0])))
            else:
                out.append(Candidate(name, kind, parse_tokens(g[0]), None, None, int(g[1])))
            break
        else:
            out.append(Candidate(name, "other"))
    return out


def _tier(cands: list[Candidate], instruct: bool) -> list[Candidate]:
    for kind in _INSTRUCT_ORDER if instruct else _BASE_ORDER:
        tier = [c for c in cands if c.kind == kind]
        if tier:
            return tier
    return []


def _size(c: Candidate) -> tuple[float, float, int, str]:
    """Bigger = later: ranked tokens, then total tokens, then step, then name."""
    rank = c.rank_tokens
    return (
        -1.0 if rank is None else rank,
        (c.tokens or 0.0) + (c.instruct_tokens or 0.0),
        -1 if c.step is None else c.step,
        c.path,
    )


def choose(
    cands: list[Candidate],
    *,
    instruct: bool = False,
    strategy: Strategy = "latest",
    nb_tok: float | None = None,
    where: str = "",
) -> Candidate:
    """The candidate the rule of the module docstring picks; a CheckpointError if none."""
    if strategy not in STRATEGIES:
        raise CheckpointError(
            f"--hf_checkpoint_strategy must be latest or best_loss, not {strategy!r}"
        )
    tier = _tier(cands, instruct)
    label = f"{where}: " if where else ""
    if not tier:
        raise CheckpointError(f"{label}no checkpoint found")
    if nb_tok is not None:
        counted = [c for c in tier if c.rank_tokens is not None]
        if not counted:
            raise CheckpointError(
                f"{label}--nb_tok: these checkpoints' names carry no token count "
                f"(e.g. {tier[0].path}); pass --hf_checkpoint NAME"
            )
        return min(counted, key=lambda c: (abs(float(c.rank_tokens or 0) - nb_tok), _neg(c)))
    if strategy == "best_loss":
        scored = [c for c in tier if c.loss is not None]
        if not scored:
            raise CheckpointError(
                f"{label}--hf_checkpoint_strategy best_loss: these checkpoints' names carry "
                "no loss (a run folder's files do not); use latest or --nb_tok"
            )
        return min(scored, key=lambda c: (c.loss if c.loss is not None else math.inf, _neg(c)))
    return max(tier, key=_size)


def _neg(c: Candidate) -> tuple[float, float, int, str]:
    """A min() tie-break that prefers the bigger (later) candidate."""
    a, b, s, _ = _size(c)
    return (-a, -b, -s, "")


@dataclass(frozen=True)
class Selection:
    """The trainer's selection flags: ``--instruct``, ``--hf_checkpoint_strategy``, ``--nb_tok``."""

    instruct: bool = False
    strategy: Strategy = "latest"
    nb_tok: float | None = None

    def pick(self, cands: list[Candidate], where: str = "") -> Candidate:
        return choose(
            cands, instruct=self.instruct, strategy=self.strategy, nb_tok=self.nb_tok, where=where
        )
