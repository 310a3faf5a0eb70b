"""Time to first token against the prefill floor (`--prefill-lengths`, issue 27 item 3).

The floor of an `L`-token prefill is the time of its weight products alone: every matrix
a step multiplies (as the model holds it, `run.active_products`) times `L` rows, the tied
head once (a prefill only needs the last token's logits), each MoE's experts at the rows
top-k routing sends them on average. Attention, norms, RoPE and the cache writes are
what a prefill adds to it; the ratio floor / time-to-first-token says how much.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..base.params import SamplingParams
from ..engine.pool import CachePool
from ..model.transformer import SWAMLA
from . import measure as bench


def prefill_floor(model: SWAMLA, length: int, reps: int = 3) -> float:
    """Seconds for the weight products of a `length`-token prefill (median of `reps`)."""
    dev = model.transformer.wte.weight.device
    mats, moes = bench.active_products(model)
    head = mats.pop()  # the tied head: the last token only
    xs = [torch.randn(length, w.shape[1], dtype=w.dtype, device=dev) for w in mats]
    xh = torch.randn(1, head.shape[1], dtype=head.dtype, device=dev)
    experts = []
    for m in moes:
        ex, rows = m.experts, math.ceil(length * m.cfg.top_k / m.cfg.n_experts)
        dt = ex.gate_up_weight.dtype
        experts.append((ex, torch.randn(rows, ex.d, dtype=dt, device=dev),
                        torch.randn(rows, ex.f, dtype=dt, device=dev)))  # fmt: skip
    times = []
    with torch.inference_mode():
        for _ in range(reps + 1):
            bench.sync(dev)
            t0 = time.perf_counter()
            for x, w in zip(xs, mats, strict=True):
                F.linear(x, w)
            F.linear(xh, head)
            for ex, x1, x2 in experts:
                for e in range(ex.gate_up_weight.shape[0]):
                    torch.mm(x1, ex.gate_up_weight[e])
                    torch.mm(x2, ex.down_weight[e])
            bench.sync(dev)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def run_prefill(
    model: SWAMLA,
    pool: CachePool,
    params: SamplingParams,
    lengths: list[int],
    rand: Callable[[int], list[int]],
    rounds: int = 2,
) -> dict[str, Any]:
    """Time to first token of a lone `L`-token prompt, each next to the floor measured
    right after it (rounds alternate, the best kept); prints one line per length."""
    out: dict[str, Any] = {}
    limit = min(2048, model.cfg.block_size)
    for L in lengths:
        L = min(L, limit)
        best: dict[str, float] | None = None
        for _ in range(max(1, rounds)):
            r = bench.engine_run(model, [rand(L)], 1, params, pool)
            floor = prefill_floor(model, L)
            if best is None or r["ttft_s"] / floor < best["ttft_s"] / best["floor_s"]:
                best = {"ttft_s": r["ttft_s"], "floor_s": floor}
        assert best is not None
        best["ratio"] = best["floor_s"] / best["ttft_s"]
        out[f"prefill_{L}"] = best
        print(
            f"prefill {L:5d}: time to first token {best['ttft_s'] * 1000:8.1f} ms "
            f"({L / best['ttft_s']:6.1f} tok/s); floor (weight products at {L} rows, measured "
            f"next to it) {best['floor_s'] * 1000:8.1f} ms -> {100 * best['ratio']:3.0f}% of it",
            flush=True,
        )
    return out
