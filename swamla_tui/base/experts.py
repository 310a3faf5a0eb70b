"""Inside the MoE, torch-free: what the router chose per token, and the summary of a run.

The engine's recorder (`swamla_tui.engine.routing`) writes a `TokenRouting` per generated
token (the routing of the forward step whose logits chose that token: the last prompt
position for the first token, then each fed token) or a `LayerTally` per MoE layer for a
scored text; everything here is plain Python so the chat core, the UI and the headless
writer can read it without torch.

Router entropy: the router scores experts with sigmoid affinities a_e = σ(logit_e) (formats
v2 §6), not a softmax, so its "distribution" is a normalised, p_e = a_e / Σ a; the entropy
of p in nats is at most ln E (every expert scored alike) and low when a few dominate. A
researcher reads it with the load spread (`load_entropy`, the entropy of the share of
chosen slots per expert; ln E when the load is balanced) and the experts never chosen.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SwamlaError

__all__ = [
    "ExpertSummary",
    "GateTally",
    "LayerRoute",
    "LayerStats",
    "LayerTally",
    "TokenRouting",
    "format_summary",
    "summarise",
    "tally_routes",
    "write_summary",
]


@dataclass(frozen=True)
class LayerRoute:
    """One MoE layer's choice for one token: experts by weight, best first."""

    layer: int
    experts: tuple[int, ...]
    weights: tuple[float, ...]  # normalised routing weights (sum to 1)
    entropy: float  # router entropy in nats
    n_experts: int  # routed experts of the layer (the ones not chosen count too)


@dataclass(frozen=True)
class TokenRouting:
    """Every MoE layer's choice for one token, and the Engram gates (layer, mean gate)."""

    moe: tuple[LayerRoute, ...] = ()
    engram: tuple[tuple[int, float], ...] = ()


@dataclass
class LayerTally:
    """Running counts of one MoE layer: chosen slots per expert, tokens, entropy sum."""

    layer: int
    counts: list[int]
    top_k: int
    tokens: int = 0
    entropy_sum: float = 0.0

    def add(self, route: LayerRoute) -> None:
        for e in route.experts:
            self.counts[e] += 1
        self.tokens += 1
        self.entropy_sum += route.entropy


@dataclass
class GateTally:
    """Running sum of one Engram layer's mean gate value."""

    layer: int
    tokens: int = 0
    gate_sum: float = 0.0


def tally_routes(
    routes: Iterable[TokenRouting | None],
) -> tuple[list[LayerTally], list[GateTally]]:
    """Per-layer tallies of recorded tokens (None entries: tokens recorded without routing)."""
    moe: dict[int, LayerTally] = {}
    gates: dict[int, GateTally] = {}
    for r in routes:
        if r is None:
            continue
        for lr in r.moe:
            t = moe.get(lr.layer) or LayerTally(lr.layer, [0] * lr.n_experts, len(lr.experts))
            moe[lr.layer] = t
            t.add(lr)
        for layer, g in r.engram:
            gt = gates.setdefault(layer, GateTally(layer))
            gt.tokens += 1
            gt.gate_sum += g
    return [moe[k] for k in sorted(moe)], [gates[k] for k in sorted(gates)]


@dataclass(frozen=True)
class LayerStats:
    """One MoE layer over a run."""

    layer: int
    tokens: int
    top_k: int
    counts: tuple[int, ...]  # tokens routed to each expert
    never: tuple[int, ...]  # experts no token chose
    router_entropy: float  # mean per-token router entropy, nats
    load_entropy: float  # entropy of the per-expert share of chosen slots, nats
    max_entropy: float  # ln E: both entropies' ceiling

    @property
    def n_experts(self) -> int:
        return len(self.counts)

    @property
    def busiest(self) -> tuple[int, float]:
        """(expert, its share of the tokens): how collapsed the routing is."""
        e = max(range(len(self.counts)), key=lambda i: self.counts[i]) if self.counts else 0
        return e, (self.counts[e] / self.tokens if self.tokens else 0.0)


@dataclass(frozen=True)
class ExpertSummary:
    """What `/experts` shows and ``--expert-stats`` writes."""

    source: str  # "reply", "batch", "perplexity"
    tokens: int
    layers: tuple[LayerStats, ...]
    engram: tuple[tuple[int, float], ...] = ()  # (layer, mean gate value)
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tokens": self.tokens,
            "layers": [
                {
                    "layer": s.layer,
                    "tokens": s.tokens,
                    "top_k": s.top_k,
                    "n_experts": s.n_experts,
                    "tokens_per_expert": list(s.counts),
                    "never_chosen": list(s.never),
                    "router_entropy": s.router_entropy,
                    "load_entropy": s.load_entropy,
                    "max_entropy": s.max_entropy,
                }
                for s in self.layers
            ],
            "engram_gate": [{"layer": k, "mean_gate": g} for k, g in self.engram],
            "notes": list(self.notes),
        }


def _entropy(counts: Sequence[int]) -> float:
    total = sum(counts)
    if not total:
        return 0.0
    return -sum(c / total * math.log(c / total) for c in counts if c)


def summarise(
    source: str,
    tallies: Sequence[LayerTally],
    gates: Sequence[GateTally] = (),
    notes: Sequence[str] = (),
) -> ExpertSummary:
    """The summary of a run's tallies (empty tallies: a model without MoE layers)."""
    layers = tuple(
        LayerStats(
            layer=t.layer,
            tokens=t.tokens,
            top_k=t.top_k,
            counts=tuple(t.counts),
            never=tuple(e for e, c in enumerate(t.counts) if c == 0),
            router_entropy=t.entropy_sum / t.tokens if t.tokens else 0.0,
            load_entropy=_entropy(t.counts),
            max_entropy=math.log(len(t.counts)) if t.counts else 0.0,
        )
        for t in tallies
    )
    tokens = max((t.tokens for t in tallies), default=0)
    tokens = max([tokens, *(g.tokens for g in gates)])
    engram = tuple((g.layer, g.gate_sum / g.tokens if g.tokens else 0.0) for g in gates)
    return ExpertSummary(source, tokens, layers, engram, tuple(notes))


def _ids(ids: Sequence[int], limit: int = 16) -> str:
    if not ids:
        return "none"
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f" … (+{len(ids) - limit})" if len(ids) > limit else "")


def format_summary(s: ExpertSummary) -> str:
    """A plain-text table of the summary (the CLI's stderr line-up, the view's header)."""
    if not s.layers and not s.engram:
        return "no MoE or Engram layers in this model"
    lines = [f"{s.source}: {s.tokens} tokens"]
    for st in s.layers:
        e, share = st.busiest
        lines.append(
            f"layer {st.layer}: top-{st.top_k} of {st.n_experts}; router entropy "
            f"{st.router_entropy:.2f} nats, load entropy {st.load_entropy:.2f} "
            f"(max {st.max_entropy:.2f}); busiest expert {e} ({100 * share:.0f}% of tokens); "
            f"never chosen: {_ids(st.never)}"
        )
    for layer, g in s.engram:
        lines.append(f"layer {layer}: Engram mean gate {g:.3f}")
    lines.extend(s.notes)
    return "\n".join(lines)


def write_summary(s: ExpertSummary, path: str | os.PathLike[str]) -> None:
    """``--expert-stats FILE``: the summary as JSON."""
    try:
        Path(path).expanduser().write_text(json.dumps(s.to_json(), indent=2) + "\n", "utf-8")
    except OSError as e:
        raise SwamlaError(f"{path}: cannot write ({e.strerror or type(e).__name__})") from None
