"""The benchmark's mixed-length workload (`python -m swamla_tui.bench --workload mixed`):
static batching against continuous batching on the same prompts, in one process.

Random weights never produce the end-of-text token at a useful rate, so the completion
lengths are set per prompt: each prompt gets a `max_new_tokens` drawn uniformly from
[`--mixed-min`, `--mixed-max`] by a seeded generator (prompt lengths: uniform 16..48
random ids). Both modes run the same prompts, limits and sampling settings through
`engine.batch.run_batch` (`continuous=False` / `True`), and produce the same number of
tokens; rounds alternate static / continuous so a shared machine's load hits both alike,
and the best and median aggregate tok/s of each are reported with their ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..base.params import SamplingParams
from ..engine.batch_run import run_batch
from ..engine.core import Engine
from ..engine.pool import CachePool
from ..engine.text import TextCodec
from ..model.transformer import SWAMLA


class _IdTokenizer:
    """Prompts written as space-separated ids (the benchmark has no tokenizer)."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def __len__(self) -> int:
        return self.vocab

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return " ".join(str(i) for i in ids)


def workload(vocab: int, n: int, lo: int, hi: int, seed: int = 3) -> tuple[list[str], list[int]]:
    """`n` prompts (16..48 random ids) and their per-prompt token budgets in [lo, hi]."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(16, 49, (n,), generator=g).tolist()
    prompts = [
        " ".join(map(str, torch.randint(0, vocab, (k,), generator=g).tolist())) for k in lens
    ]
    limits = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    return prompts, [int(x) for x in limits]


def _one(engine: Engine, codec: TextCodec, prompts: list[str], limits: list[int],
         params: SamplingParams, batch: int, continuous: bool) -> tuple[float, int]:  # fmt: skip
    dev = engine.model.lm_head.weight.device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    n = 0
    for r in run_batch(engine, codec, prompts, params, batch_size=batch, limits=limits,
                       continuous=continuous):  # fmt: skip
        n += r.new_tokens
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0, n


def run_mixed(
    model: SWAMLA,
    pool: CachePool,
    params: SamplingParams,
    *,
    prompts: int,
    batch: int,
    lo: int,
    hi: int,
    rounds: int,
) -> dict[str, Any]:
    """Alternating rounds of static and continuous batching; figures as a dict (printed)."""
    vocab = int(model.cfg.vocab_size)
    engine = Engine(model, min(2048, model.cfg.block_size), None, pool)
    codec = TextCodec(_IdTokenizer(vocab))
    texts, limits = workload(vocab, prompts, lo, hi)
    want = sum(limits)
    print(
        f"mixed workload: {prompts} prompts (16-48 ids), max_new_tokens uniform {lo}-{hi} "
        f"(seeded; {want} tokens in all, mean {want / prompts:.1f}), batch {batch}",
        flush=True,
    )
    _one(engine, codec, texts[:batch], [4] * min(batch, prompts), params, batch, True)  # warm-up
    _one(engine, codec, texts[:batch], [4] * min(batch, prompts), params, batch, False)
    figs: dict[str, list[float]] = {"static": [], "continuous": []}
    for i in range(max(1, rounds)):
        for mode in ("static", "continuous"):
            secs, n = _one(engine, codec, texts, limits, params, batch, mode == "continuous")
            assert n == want, f"{mode}: {n} tokens, expected {want}"
            figs[mode].append(n / secs)
            print(f"round {i + 1} {mode:10s}: {n / secs:7.2f} tok/s ({secs:6.1f} s)", flush=True)
    out: dict[str, Any] = {"prompts": prompts, "batch": batch, "min_new": lo, "max_new": hi,
                           "tokens": want, "rounds": figs}  # fmt: skip
    for mode, xs in figs.items():
        out[f"{mode}_best"], out[f"{mode}_median"] = max(xs), statistics.median(xs)
    out["ratio_best"] = out["continuous_best"] / out["static_best"]
    out["ratio_median"] = out["continuous_median"] / out["static_median"]
    print(
        f"static     best {out['static_best']:7.2f} tok/s, median {out['static_median']:7.2f}\n"
        f"continuous best {out['continuous_best']:7.2f} tok/s, median "
        f"{out['continuous_median']:7.2f}\n"
        f"continuous / static: {out['ratio_best']:.2f}x (best), {out['ratio_median']:.2f}x "
        "(median)",
        flush=True,
    )
    return out
