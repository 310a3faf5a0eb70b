"""The benchmark's chat workload (`python -m swamla_tui.bench --chat-turns`): time to first
token turn after turn, with and without the turn-to-turn prompt cache, in one process.

A scripted conversation of `turns` turns whose last prompt ends near the context limit:
each turn adds a user message of random ids and the reply the model generated (seeded
sampling), so every prompt extends the previous one as a chat's does. Each turn runs
twice, cached (one `PromptCache` across the turns) and fresh (a full prefill), alternating
so a shared machine's load hits both alike; both give the same reply (the tests check it
token for token), so both conversations stay the same.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..base.params import SamplingParams
from ..engine.core import Engine
from ..engine.pool import CachePool
from ..engine.prompt_cache import PromptCache
from ..model.transformer import SWAMLA


def _ttft(
    engine: Engine, prompt: list[int], params: SamplingParams, pc: PromptCache | None
) -> tuple[float, list[int], int]:
    dev = engine.model.lm_head.weight.device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    gen = engine.generation([prompt], params, prompt_cache=pc)
    first = None
    for _ in gen:
        if first is None:
            first = time.perf_counter() - t0
    assert first is not None
    return first, gen.rows[0].new, gen.reused


def run_chat_turns(
    model: SWAMLA,
    pool: CachePool,
    params: SamplingParams,
    *,
    max_length: int = 2048,
    turns: int = 10,
    new: int = 32,
    system: int = 32,
) -> dict[str, Any]:
    engine = Engine(model, max_length, None, pool)
    p = params.copy(max_new_tokens=new)
    # the last prompt ends `new` tokens short of the limit (its reply reaches it)
    per_turn = max(8, (max_length - new - system) // turns)
    user = max(1, per_turn - new)
    gen = torch.Generator().manual_seed(3)

    def rand(n: int) -> list[int]:
        ids: list[int] = torch.randint(0, model.cfg.vocab_size, (n,), generator=gen).tolist()
        return ids

    _ttft(engine, rand(64), p, None)  # warm-up
    pc = engine.prompt_cache()
    prompt = rand(system) + rand(user)
    rows: list[dict[str, Any]] = []
    print(f"chat turns: {turns} turns of {user} user + {new} reply tokens, max_length {max_length}")
    print(" turn  prompt  reused   ttft cached   ttft fresh   fresh/cached")
    for i in range(1, turns + 1):
        cached, reply, reused = _ttft(engine, prompt, p, pc)
        fresh, reply_fresh, _ = _ttft(engine, prompt, p, None)
        same = reply == reply_fresh
        rows.append({"turn": i, "prompt_tokens": len(prompt), "reused": reused,
                     "ttft_cached_s": cached, "ttft_fresh_s": fresh, "same_reply": same})  # fmt: skip
        print(
            f"{i:5d}  {len(prompt):6d}  {reused:6d}  {cached * 1000:9.1f} ms  "
            f"{fresh * 1000:8.1f} ms  {fresh / cached:10.1f}x"
            + ("" if same else "  (replies differ!)"),
            flush=True,
        )
        prompt = prompt + reply + rand(user)
    by = {r["turn"]: r for r in rows}
    first, last = by[1], by[turns]
    summary = {
        "turn10_over_turn1_cached": last["ttft_cached_s"] / first["ttft_cached_s"],
        "fresh_over_cached_last": last["ttft_fresh_s"] / last["ttft_cached_s"],
    }
    print(
        f"turn {turns} / turn 1 (cached): {summary['turn10_over_turn1_cached']:.2f}x · "
        f"turn {turns} fresh / cached: {summary['fresh_over_cached_last']:.1f}x"
    )
    return {"rows": rows, **summary}
