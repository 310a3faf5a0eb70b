"""``--diagnose``: is this checkpoint healthy, and does bfloat16 change what it computes?

The trainer's inference.py has a ``--diagnose`` that prints the config, stored dtypes,
weight statistics, the residual scalars and the perplexity of a fixed sentence with and
without autocast. We have no autocast (the model runs in one dtype), so the comparison is
the same checkpoint loaded twice, in float32 and in bfloat16, each exactly as the app
would run it, with the KL divergence between their next-token distributions: a large KL
means bfloat16 is not a faithful way to run this model.

The models load one after the other (the float32 one is released first), so the check
needs the memory of one model plus the [T, V] log-probabilities of a short sentence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..base.errors import SwamlaError

SENTENCE = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."
RESIDUAL_KEYS = ("x0_lambdas", "resid_lambdas")
Loader = Callable[[Callable[[str], None]], Any]


@dataclass(frozen=True)
class WeightGroup:
    """Statistics of the tensors that share a name once layer numbers are replaced by `*`."""

    name: str
    tensors: int
    numel: int
    mean: float
    std: float
    max_abs: float
    nonfinite: int


@dataclass
class Diagnosis:
    card: dict[str, str]
    stored_dtype: str
    groups: list[WeightGroup]
    residual: dict[str, list[float]]
    tokens: int
    perplexity: dict[str, float] = field(default_factory=dict)  # dtype -> perplexity
    kl: float | None = None  # mean over positions of KL(float32 || bfloat16), nats
    notes: list[str] = field(default_factory=list)


def weight_stats(named: Iterable[tuple[str, torch.Tensor]]) -> list[WeightGroup]:
    """One row per tensor name pattern (`h.3.attn.w` and `h.4.attn.w` -> `h.*.attn.w`),
    statistics in float64 over every element, non-finite ones counted, not averaged."""
    acc: dict[str, list[float]] = {}  # name -> [tensors, n, sum, sumsq, maxabs, nonfinite]
    for name, t in named:
        if not (t.is_floating_point() and t.numel()):
            continue
        key = re.sub(r"\.\d+\.", ".*.", name)
        x = t.detach().to("cpu", torch.float64).reshape(-1)
        finite = torch.isfinite(x)
        bad = int((~finite).sum())
        x = x[finite]
        a = acc.setdefault(key, [0, 0, 0.0, 0.0, 0.0, 0])
        a[0] += 1
        a[1] += x.numel()
        a[2] += float(x.sum())
        a[3] += float((x * x).sum())
        a[4] = max(a[4], float(x.abs().max())) if x.numel() else a[4]
        a[5] += bad
    out: list[WeightGroup] = []
    for key, (k, n, s, ss, m, nb) in acc.items():
        mean = s / n if n else math.nan
        var = max(0.0, ss / n - mean * mean) if n else math.nan
        out.append(WeightGroup(key, int(k), int(n), mean, math.sqrt(var), m, int(nb)))
    return out


def residual_scalars(state: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """The G7 residual scalars (formats G7 §3) when the model has them, by state-dict key."""
    return {
        k: [float(v) for v in t.detach().float().reshape(-1).tolist()]
        for k, t in state.items()
        if any(k.endswith(name) for name in RESIDUAL_KEYS)
    }


def sentence_logprobs(lm: Any, text: str = SENTENCE) -> tuple[torch.Tensor, float, int]:
    """(log-probabilities [T, V] float32 on the CPU, perplexity, scored tokens) of `text`,
    EOS in front as in `swamla_tui.runtime.perplexity` (every text token scored)."""
    if getattr(lm, "codec", None) is None:
        raise SwamlaError("--diagnose needs a tokenizer (pass --tokenizer PATH)")
    ids = lm.encode(text)
    if lm.eos_id is not None:
        ids = [int(lm.eos_id), *ids]
    ids = ids[: lm.max_length]
    if len(ids) < 2:
        raise SwamlaError("--diagnose: the sentence is too short for this tokenizer")
    x = torch.tensor([ids], dtype=torch.long, device=lm.device)
    with torch.inference_mode():
        logits = lm.model(x)[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1).cpu()
    targets = torch.tensor(ids[1:], dtype=torch.long)
    nll = float(-logp.gather(1, targets[:, None]).mean())
    return logp, math.exp(nll), len(ids) - 1


def mean_kl(p_log: torch.Tensor, q_log: torch.Tensor) -> float:
    """Mean over positions of KL(p || q), both given as log-probabilities [T, V]."""
    kl = (p_log.exp() * (p_log - q_log)).sum(dim=-1)
    return float(kl.mean())


def diagnose(load32: Loader, load16: Loader, say: Callable[[str], None]) -> Diagnosis:
    """The diagnosis of the checkpoint the two loaders read (float32 first, then bfloat16)."""
    lm: Any = load32(say)
    model = lm.model
    d = Diagnosis(
        card=dict(lm.card()),
        stored_dtype=str(lm.stored_dtype),
        groups=weight_stats(model.named_parameters()),
        residual=residual_scalars(model.state_dict()),
        tokens=0,
        notes=list(lm.notices),
    )
    logp32, d.perplexity["float32"], d.tokens = sentence_logprobs(lm)
    del lm, model
    say("Loading again in bfloat16")
    lm16: Any = load16(say)
    d.notes += [n for n in lm16.notices if n not in d.notes]
    logp16, d.perplexity["bfloat16"], _ = sentence_logprobs(lm16)
    del lm16
    d.kl = mean_kl(logp32, logp16)
    return d


def _g(x: float) -> str:
    return f"{x:.4g}"


def format_diagnosis(d: Diagnosis) -> str:
    """The printed card: model lines, weights table, residual scalars, the two perplexities."""
    lines: list[str] = []
    width = max(len(k) for k in d.card)
    lines += [f"{k.rjust(width)}  {v}" for k, v in d.card.items()]
    lines += ["", "weights (layer numbers folded into *):"]
    nw = max([len(g.name) for g in d.groups] + [4])
    lines.append(f"  {'name'.ljust(nw)}  {'n':>3}  {'mean':>10}  {'std':>10}  {'max|w|':>10}")
    for g in d.groups:
        bad = f"  {g.nonfinite} NaN/Inf" if g.nonfinite else ""
        lines.append(
            f"  {g.name.ljust(nw)}  {g.tensors:>3}  {_g(g.mean):>10}  {_g(g.std):>10}  "
            f"{_g(g.max_abs):>10}{bad}"
        )
    total_bad = sum(g.nonfinite for g in d.groups)
    lines.append(
        f"  {sum(g.numel for g in d.groups):,} values, "
        + (f"{total_bad:,} NaN/Inf" if total_bad else "all finite")
    )
    lines += ["", "residual scalars:"]
    if not d.residual:
        lines.append("  none (no x0_lambdas / resid_lambdas in this model)")
    for k, vals in d.residual.items():
        lines.append(f"  {k}: " + " ".join(f"{v:.4f}" for v in vals))
    lines += ["", f"fixed sentence ({d.tokens} tokens scored): {SENTENCE!r}"]
    for dt, ppl in d.perplexity.items():
        lines.append(f"  perplexity {dt:<8}  {ppl:.4f}")
    if d.kl is not None:
        lines.append(f"  KL(float32 || bfloat16)  {d.kl:.3g} nats per token")
    return "\n".join(lines)
