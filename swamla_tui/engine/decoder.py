"""Batched incremental decoding over the model's caches.

`BatchDecoder` owns one generation: it left-pads ragged prompts (each row keeps its own
positions starting at 0), prefills them in one forward, then feeds one token per row per
step. When a row's context reaches `max_length` it keeps the most recent tokens and
re-encodes them from position 0, as the original script's sliding context does (spec §6).
On CUDA the one-token step is captured once in a CUDA graph and replayed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..model.cache import ModelCache, StepContext, visible
from ..model.transformer import SWAMLA


def decode_context(
    model: SWAMLA, cache: ModelCache, pos: Tensor, lin_slot: Tensor, ring_slot: Tensor | None
) -> StepContext:
    """Device-only version of `SWAMLA.step_context` for one token per row (graph-safe)."""
    cfg = model.cfg
    cache.lin_key_pos.index_copy_(1, lin_slot, pos)
    ctx = StepContext(
        pos=pos,
        lin_slots=lin_slot,
        lin_mask=visible(cache.lin_key_pos, pos, None, 0),
        lin_len=cache.lin_size,
    )
    if cache.window_mode:
        assert cache.ring_key_pos is not None and ring_slot is not None
        key_pos = torch.cat((cache.ring_key_pos, pos), dim=1)
        ctx.ring_mask = visible(key_pos, pos, cfg.swa_window, cfg.swa_sink_size)
        ctx.ring_slots = ring_slot
        cache.ring_key_pos.index_copy_(1, ring_slot, pos)
    return ctx


class GraphStep:
    """A captured one-token decode step for a fixed cache (CUDA only)."""

    def __init__(self, model: SWAMLA, cache: ModelCache) -> None:
        self.model, self.cache = model, cache
        b, dev = cache.batch, cache.lin_key_pos.device
        self.ids = torch.zeros(b, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(b, 1, dtype=torch.long, device=dev)
        self.lin_slot = torch.zeros(1, dtype=torch.long, device=dev)
        self.ring_slot = torch.zeros(1, dtype=torch.long, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: Tensor | None = None

    def _run(self) -> Tensor:
        ring = self.ring_slot if self.cache.window_mode else None
        ctx = decode_context(self.model, self.cache, self.pos, self.lin_slot, ring)
        return self.model.forward_cached(self.ids, self.pos, self.cache, ctx)[:, -1]

    def capture(self) -> None:
        # warm up on a side stream, then capture; state written during warm-up is harmless
        # because every slot it touches is rewritten before it is read.
        saved = (
            self.cache.lin_key_pos.clone(),
            (None if self.cache.ring_key_pos is None else self.cache.ring_key_pos.clone()),
        )
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                self._run()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            self.out = self._run()
        self.graph = g
        self.cache.lin_key_pos.copy_(saved[0])
        if saved[1] is not None:
            assert self.cache.ring_key_pos is not None
            self.cache.ring_key_pos.copy_(saved[1])

    def __call__(self, ids: Tensor, pos: Tensor, a: int) -> Tensor:
        self.ids.copy_(ids.view(-1, 1))
        self.pos.copy_(pos.view(-1, 1))
        self.lin_slot.fill_(a)
        if self.cache.window_mode:
            self.ring_slot.fill_(self.cache.ring_slot(a))
        if self.graph is None:
            self.capture()
        assert self.graph is not None and self.out is not None
        self.graph.replay()
        return self.out


class BatchDecoder:
    """Holds the cache and per-row positions for one batched generation."""

    def __init__(
        self,
        model: SWAMLA,
        *,
        max_length: int,
        use_graph: bool = False,
        cache_pool: Callable[[int, int, int], tuple[ModelCache, GraphStep | None]] | None = None,
    ) -> None:
        self.model = model
        self.max_length = max_length
        self.use_graph = use_graph
        self.cache_pool = cache_pool
        self.device = model.transformer.wte.weight.device
        self.cache: ModelCache | None = None
        self.graph: GraphStep | None = None
        self.next_pos: Tensor | None = None  # [B] position of the next token per row
        self.lengths: list[int] = []
        self.reencodes = 0
        self.graph_failed = False

    # ------------------------------------------------------------------
    def prefill(self, rows: list[list[int]], capacity: int) -> Tensor:
        """Encode ragged rows from position 0; returns last-position logits [B, V]."""
        b = len(rows)
        lmax = max(len(r) for r in rows)
        size = max(lmax + 1, min(self.max_length, capacity))
        pads = [lmax - len(r) for r in rows]
        ids = torch.zeros(b, lmax, dtype=torch.long)
        pos = torch.full((b, lmax), -1, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, pads[i] :] = torch.tensor(r, dtype=torch.long)
            pos[i, pads[i] :] = torch.arange(len(r))
        ids, pos = ids.to(self.device), pos.to(self.device)
        if self.cache_pool is not None:
            self.cache, self.graph = self.cache_pool(b, size, max(pads))
            if self.graph_failed:
                self.graph = None
        else:
            self.cache = self.model.setup_cache(b, size, pad=max(pads))
            self.graph = None
        self.cache.reset()
        ctx = self.model.step_context(pos, self.cache)
        logits = self.model.forward_cached(ids, pos, self.cache, ctx)[:, -1]
        self.lengths = [len(r) for r in rows]
        self.next_pos = torch.tensor(self.lengths, dtype=torch.long, device=self.device)
        return logits

    def full(self) -> bool:
        assert self.cache is not None
        return self.cache.written >= self.cache.lin_size or max(self.lengths) >= self.max_length

    def step(self, ids: Tensor) -> Tensor:
        """Feed one token per row ([B] on device); returns logits [B, V]."""
        assert self.cache is not None and self.next_pos is not None
        a = self.cache.written
        pos = self.next_pos
        out = None
        if self.graph is not None:
            try:
                out = self.graph(ids, pos, a)
                self.cache.written = a + 1
            except Exception as e:  # noqa: BLE001 - capture can fail on exotic setups
                import warnings

                warnings.warn(f"CUDA graph capture failed, decoding eagerly: {e}", stacklevel=2)
                self.graph = None
                self.graph_failed = True
                self.cache.lin_key_pos[:, a:] = -1
        if out is None:
            lin_slot = torch.tensor([a], device=self.device)
            ring = None
            if self.cache.window_mode:
                ring = torch.tensor([self.cache.ring_slot(a)], device=self.device)
            ctx = decode_context(self.model, self.cache, pos[:, None], lin_slot, ring)
            ctx.lin_len = a + 1
            ctx.lin_mask = ctx.lin_mask[..., : a + 1]
            self.cache.written = a + 1
            out = self.model.forward_cached(ids.view(-1, 1), pos[:, None], self.cache, ctx)[:, -1]
        self.next_pos = pos + 1
        self.lengths = [n + 1 for n in self.lengths]
        return out
