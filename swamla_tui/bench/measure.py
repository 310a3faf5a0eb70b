"""What several benchmarks measure the same way: the weight products of one decode step,
a timed engine run, and a device sync. Its own module so that `run` (the entry point) and
the benchmarks it dispatches to (`prefill`, ...) import it without importing each other."""

from __future__ import annotations

import time
from typing import cast

import torch

from ..base.params import SamplingParams
from ..engine.decode_loop import Generation
from ..engine.pool import CachePool
from ..model.deltanet import DeltaNetBlock, WeDLMAdapter
from ..model.mla import MLABlock
from ..model.moe import MoE
from ..model.swa import SWABlock
from ..model.transformer import SWAMLA

__all__ = ["active_products", "engine_run", "sync"]


def active_products(model: SWAMLA) -> tuple[list[torch.Tensor], list[MoE]]:
    """The weight matrices one decode step multiplies (as the model holds them, fused where
    it fuses), and the MoE layers, whose routed experts are timed separately."""
    mats: list[torch.Tensor] = []
    moes: list[MoE] = []
    for blk in model.transformer.h:
        if isinstance(blk, DeltaNetBlock):
            a = blk.attn.deltanet if isinstance(blk.attn, WeDLMAdapter) else blk.attn
            mats.append(a._in.get())
            ups = ("qk", "q", "k", "v")
            mats += [getattr(a, f"{nm}_up").weight for nm in ups if hasattr(a, f"{nm}_up")]
            mats += [a.o_up.weight, a.o_down.weight] if a.latent else [a.o_proj.weight]
            mats += [blk.mlp.gate_up_proj.weight, blk.mlp.down_proj.weight]
            continue
        at = blk.attn
        if isinstance(blk, MLABlock):
            names: tuple[str, ...] = ("wq", "wq_a", "wq_b", "wkv_a", "wkv_b", "wo")
            shared = blk.attn.q_kv
        else:
            names = ("q_proj", "k_proj", "v_proj", "o_proj")
            shared = cast(SWABlock, blk).attn.qkv
        fused = shared.product()
        if isinstance(fused, torch.Tensor):  # the members as the one product the model runs
            mats.append(fused)
            names = tuple(nm for nm in names if nm not in shared.names)
        mats += [getattr(at, nm).weight for nm in names if hasattr(at, nm)]
        ffn = blk.ffn if isinstance(blk, MLABlock) else cast(SWABlock, blk).mlp
        if isinstance(ffn, MoE):
            mats.append(ffn._in.get())
            mats += [s.down_proj.weight for s in ffn._shared()]
            mats += [ffn.up_proj.weight] if ffn.cfg.latent else []
            moes.append(ffn)
        else:
            mats += [ffn.gate_up_proj.weight, ffn.down_proj.weight]
    mats.append(model.transformer.wte.weight)  # the tied head
    return mats, moes


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def engine_run(
    model: SWAMLA, prompts: list[list[int]], new: int, params: SamplingParams, pool: CachePool
) -> dict[str, float]:
    dev = model.transformer.wte.weight.device
    p = params.copy(max_new_tokens=new)
    gen = Generation(
        model, prompts, p, max_length=2048, eos_id=None, use_graph=pool.graphs, cache_pool=pool
    )
    sync(dev)
    t0 = time.perf_counter()
    first = None
    n = 0
    for step in gen:
        if first is None:
            first = time.perf_counter()
        n += sum(1 for t in step if t is not None)
    sync(dev)
    t1 = time.perf_counter()
    steps = max(len(r.new) for r in gen.rows)
    assert first is not None
    decode_tokens = n - len(prompts)  # tokens after the first step of each row
    return {
        "ttft_s": first - t0,
        "decode_tok_s": decode_tokens / (t1 - first) if t1 > first else 0.0,
        "total_tok_s": n / (t1 - t0),
        "steps": steps,
    }
