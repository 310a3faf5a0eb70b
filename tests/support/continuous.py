"""Test support for continuous batching: engines over the fixtures and over synthetic v2
models, prompts of mixed lengths, and the reference (each prompt run on its own)."""

from __future__ import annotations

from typing import Any

import torch

from swamla_tui.base.params import SamplingParams
from swamla_tui.engine.continuous import ContinuousBatch, Queued
from swamla_tui.engine.core import Engine
from swamla_tui.engine.pool import CachePool
from tests.support.helpers import V2_TOKENIZER, random_init_, v2_variant_config

GREEDY = SamplingParams(temperature=0.0, top_k=1, top_p=1.0, repetition_penalty=1.0)
SEEDED = SamplingParams(temperature=0.9, top_k=40, top_p=0.9, repetition_penalty=1.1, seed=11)


def engine_of(model: Any, max_length: int, eos_id: int | None = None) -> Engine:
    """An eager engine (no CUDA graphs) over `model`."""
    return Engine(model, max_length, eos_id, CachePool(model, max_length, graphs=False))


def synthetic_v2(name: str) -> Any:
    """A v2 variant built in memory (random weights; Engram gets the tok384 mapping)."""
    from transformers import AutoTokenizer

    from swamla_tui.model.token_map import token_mapping
    from swamla_tui.model.transformer import SWAMLA

    cfg = v2_variant_config(name)
    model = SWAMLA(cfg).eval()
    random_init_(model, seed=5)
    if cfg.engram is not None:
        vocab = dict(AutoTokenizer.from_pretrained(str(V2_TOKENIZER)).get_vocab())
        model.set_token_mapping(token_mapping(vocab, cfg.vocab_size))
    model.prepare()
    return model


def mixed_prompts(vocab: int, lengths: list[int], seed: int = 3) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths]


def alone(engine: Engine, ids: list[int], params: SamplingParams, limit: int) -> list[int]:
    """The prompt's new ids from a generation of its own (`Generation`, batch 1)."""
    gen = engine.generation([ids], params.copy(max_new_tokens=limit))
    for _ in gen:
        pass
    return list(gen.rows[0].new)


def continuous(
    engine: Engine,
    prompts: list[list[int]],
    params: SamplingParams,
    limits: list[int],
    slots: int,
    **kw: Any,
) -> tuple[dict[int, list[int]], ContinuousBatch, list[int]]:
    """New ids per prompt index, the scheduler (for its counters), and the finish order."""
    batch = ContinuousBatch(
        engine.model, params, slots=slots, max_length=engine.max_length, eos_id=engine.eos_id, **kw
    )
    out: dict[int, list[int]] = {}
    order: list[int] = []
    for f in batch.run(
        Queued(i, p, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True))
    ):
        assert f.row is not None
        out[f.index] = list(f.row.new)
        order.append(f.index)
    return out, batch, order
