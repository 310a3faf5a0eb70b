"""The benchmark's MoE-recording workload (`python -m swamla_tui.bench --workload routing`):
decode tok/s with the inspector's recording off and on, in one process.

Three modes on the same prompt and sampling settings, single stream, eager decoding (the
recording needs each step's logits on the host, so the inspector decodes eagerly anyway):

- ``off``: nothing recorded; the MoE/Engram hooks are None (one attribute check per layer);
- ``logprobs``: what ``/probs on`` recorded before routing existed (token probabilities);
- ``routing``: ``logprobs`` plus the routing (`engine.routing.StepRoutes`): what the
  inspector records now.

Rounds alternate the modes so a shared machine's load hits all alike; the best round of
each is reported with the overheads of ``routing`` over ``logprobs`` (what recording the
experts adds) and over ``off``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..base.params import SamplingParams
from ..engine.decode_loop import Generation
from ..engine.pool import CachePool
from ..model.transformer import SWAMLA

MODES = {"off": (None, False), "logprobs": (5, False), "routing": (5, True)}


def _decode_tok_s(
    model: SWAMLA, prompt: list[int], new: int, params: SamplingParams, pool: CachePool, mode: str
) -> float:
    logprobs, routing = MODES[mode]
    gen = Generation(
        model, [prompt], params.copy(max_new_tokens=new), max_length=2048, eos_id=None,
        use_graph=pool.graphs, cache_pool=pool, logprobs=logprobs, routing=routing,
    )  # fmt: skip
    first = None
    n = 0
    for _ in gen:
        if first is None:
            first = time.perf_counter()
        n += 1
    if model.lm_head.weight.device.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    assert first is not None
    if routing and gen.routes is not None:
        assert len(gen.rows[0].routes) == n  # the figures were really recorded
    return (n - 1) / (t1 - first) if t1 > first else 0.0


def run_routing(
    model: SWAMLA,
    pool: CachePool,
    params: SamplingParams,
    prompt: list[int],
    *,
    new: int,
    rounds: int,
) -> dict[str, Any]:
    for mode in MODES:  # warm-up: first use of each path
        _decode_tok_s(model, prompt, 4, params, pool, mode)
    best: dict[str, float] = {}
    for _ in range(max(1, rounds)):
        for mode in MODES:
            r = _decode_tok_s(model, prompt, new, params, pool, mode)
            best[mode] = max(best.get(mode, 0.0), r)
    over_lp = 100 * (best["logprobs"] / best["routing"] - 1) if best["routing"] else 0.0
    over_off = 100 * (best["off"] / best["routing"] - 1) if best["routing"] else 0.0
    print(
        f"decode, prompt {len(prompt)}, {new} new, best of {rounds}: "
        + ", ".join(f"{m} {v:.2f} tok/s" for m, v in best.items())
    )
    print(
        f"recording the experts costs {over_lp:+.1f}% of decode time over /probs alone, "
        f"{over_off:+.1f}% over nothing recorded"
    )
    return {"prompt": len(prompt), "new": new, "rounds": rounds, "tok_s": best,
            "overhead_vs_logprobs_pct": over_lp, "overhead_vs_off_pct": over_off}  # fmt: skip
