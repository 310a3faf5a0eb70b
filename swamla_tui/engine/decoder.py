"""Batched incremental decoding over the model's caches.

`BatchDecoder` owns one generation: it left-pads ragged prompts (each row keeps its own
positions starting at 0), prefills them in one forward, then feeds one token per row per
step. When a row's context reaches `max_length` it keeps the most recent tokens and
re-encodes them from position 0, as the original script's sliding context does (formats v1 §6).
On CUDA the one-token step is captured once in a CUDA graph and replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..base.errors import one_line
from ..model.cache import ModelCache, StepContext, visible
from ..model.transformer import SWAMLA
from .sampling import noise_width, sample_tensors


def decode_context(
    model: SWAMLA,
    cache: ModelCache,
    pos: Tensor,
    lin_slot: Tensor,
    ring_slot: Tensor | None,
    n: int | None = None,
) -> StepContext:
    """Device-only version of `SWAMLA.step_context` for one token per row (graph-safe)."""
    cfg = model.cfg
    cache.lin_key_pos.index_copy_(1, lin_slot, pos)
    n = cache.lin_size if n is None else n
    ctx = StepContext(
        pos=pos,
        lin_slots=lin_slot,
        lin_mask=visible(cache.lin_key_pos[:, :n], pos, None, 0),
        lin_len=n,
    )
    if cache.window_mode:
        assert cache.ring_key_pos is not None and ring_slot is not None
        key_pos = torch.cat((cache.ring_key_pos, pos), dim=1)
        ctx.ring_mask = visible(key_pos, pos, cfg.swa_window, cfg.swa_sink_size)
        ctx.ring_slots = ring_slot
        cache.ring_key_pos.index_copy_(1, ring_slot, pos)
    return ctx


class GraphLoop:
    """One decode step *and* the sampling of the next token, captured as a CUDA graph.

    Kernel launches dominate small-batch decoding on a GPU, so everything between two
    token ids runs as one graph replay: forward, penalty, temperature, top-k, top-p, draw,
    and the advance of ids/positions/slot. The host only refreshes the noise (one launch),
    copies the settings when they change, replays, and reads the ids.
    With `capture=False` the same body runs eagerly (used to test the logic on the CPU).
    """

    min_bucket = 128  # smallest attended length a graph is captured for

    def __init__(
        self, model: SWAMLA, cache: ModelCache, *, capture: bool = True, compile: bool = False
    ) -> None:
        self.model, self.cache, self.capture_enabled = model, cache, capture
        b, dev = cache.batch, cache.lin_key_pos.device
        v = model.cfg.vocab_size
        self.ids = torch.zeros(b, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(b, 1, dtype=torch.long, device=dev)
        self.a = torch.zeros(1, dtype=torch.long, device=dev)
        self.seen = torch.zeros(b, v, dtype=torch.bool, device=dev)
        self.noise = torch.ones(b, v, dtype=torch.float32, device=dev)
        self.sp = torch.zeros(4, dtype=torch.float32, device=dev)
        self._sp_host: tuple[float, ...] | None = None
        self.written = 0
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}  # attended length -> graph
        self.graph: torch.cuda.CUDAGraph | None = None
        self.n = cache.lin_size
        self.last_logits: Tensor | None = None
        self._outs: dict[int, Tensor] = {}  # attended length -> that graph's logits buffer
        self.body = self._body
        if capture and compile:
            try:  # fuses the many small elementwise kernels; the graph then replays fewer
                self.body = torch.compile(self._body, dynamic=False)
            except Exception:  # noqa: BLE001
                self.body = self._body

    def _body(self) -> None:

        c = self.cache
        ring = None
        if c.window_mode:
            span = c.ring_size - c.ring_prefix
            ring = torch.where(
                self.a < c.ring_size, self.a, c.ring_prefix + (self.a - c.ring_prefix) % span
            )
        ctx = decode_context(self.model, c, self.pos, self.a, ring, self.n)
        logits = self.model.forward_cached(self.ids, self.pos, c, ctx)[:, -1]
        self.last_logits = logits  # after capture: the graph's static output (tests read it)
        nxt = sample_tensors(logits, self.seen, self.sp, self.noise)  # [B]
        self.ids.copy_(nxt[:, None])
        self.seen.scatter_(1, nxt[:, None], True)
        self.pos.add_(1)
        self.a.add_(1)

    def _state(self) -> list[Tensor]:
        ts = [self.ids, self.pos, self.a, self.seen, self.cache.lin_key_pos]
        if self.cache.ring_key_pos is not None:
            ts.append(self.cache.ring_key_pos)
        return ts

    def _restore(self, saved: list[Tensor]) -> None:
        for t, v in zip(self._state(), saved, strict=True):
            t.copy_(v)

    def _capture_with(self, body: Callable[[], None], saved: list[Tensor]) -> None:
        s = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm-up (lazy inits, compilation) outside the capture
            for _ in range(2):
                body()
                self._restore(saved)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            body()
        self._restore(saved)
        assert self.last_logits is not None
        self._outs[self.n] = self.last_logits
        self.graphs[self.n] = g
        self.graph = g

    def _capture(self) -> None:
        saved = [t.clone() for t in self._state()]
        try:
            self._capture_with(self.body, saved)
        except Exception as e:  # noqa: BLE001
            if self.body is self._body:
                raise
            import warnings

            warnings.warn(
                f"torch.compile failed ({one_line(e)}); using the plain CUDA graph", stacklevel=2
            )
            self._restore(saved)
            self.body = self._body
            self._capture_with(self.body, saved)

    def load(self, ids: Tensor, pos: Tensor, written: int) -> None:
        """Start from eager state: last sampled ids [B], their positions [B], slots used."""
        self.ids.copy_(ids.view(-1, 1))
        self.pos.copy_(pos.view(-1, 1))
        self.a.fill_(written)
        self.written = written

    def advance(self, params: Any, generator: torch.Generator | None) -> Tensor:
        """Feed the current ids, sample the next ones; returns ids [B] (a static buffer)."""
        sp = (float(params.temperature), float(params.top_k), float(params.top_p),
              float(params.repetition_penalty))  # fmt: skip
        if sp != self._sp_host:
            self.sp.copy_(torch.tensor(sp, dtype=torch.float32))
            self._sp_host = sp
        if sp[0] > 0:  # the draws `sample` makes, in its order (see sample_tensors)
            w = noise_width(int(sp[1]), self.noise.shape[1])
            if w < self.noise.shape[1]:
                self.noise.fill_(1.0)
                self.noise[:, :w].copy_(
                    torch.empty(self.noise.shape[0], w, device=self.noise.device).exponential_(
                        1.0, generator=generator
                    )
                )
            else:
                self.noise.exponential_(1.0, generator=generator)
        # attend over a power-of-two bucket of slots, not the whole cache: one graph each
        n = self.min_bucket
        while n < self.written + 1 and n < self.cache.lin_size:  # slots in use after this step
            n *= 2
        self.n = min(n, self.cache.lin_size)
        if not self.capture_enabled:
            self.body()
        else:
            self.graph = self.graphs.get(self.n)
            if self.graph is None:
                self._capture()
            assert self.graph is not None
            self.graph.replay()
            self.last_logits = self._outs[self.n]
        self.written += 1
        return self.ids.view(-1)


class BatchDecoder:
    """Holds the cache and per-row positions for one batched generation."""

    def __init__(
        self,
        model: SWAMLA,
        *,
        max_length: int,
        use_graph: bool = False,
        cache_pool: Callable[[int, int, int], tuple[ModelCache, GraphLoop | None]] | None = None,
    ) -> None:
        self.model = model
        self.max_length = max_length
        self.use_graph = use_graph
        self.cache_pool = cache_pool
        self.device = model.lm_head.weight.device  # tied to the embedding
        self.cache: ModelCache | None = None
        self.graph: GraphLoop | None = None
        self.lengths: list[int] = []  # tokens in the cache per row (= next position)
        self.reencodes = 0
        self.graph_failed = False
        self._graph_fresh = False

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
            if self.graph_failed or not self.use_graph:
                self.graph = None
        else:
            self.cache = self.model.setup_cache(b, size, pad=max(pads))
            self.graph = None
        self.cache.reset()
        self._graph_fresh = True
        ctx = self.model.step_context(pos, self.cache)
        logits = self.model.forward_cached(ids, pos, self.cache, ctx, last_only=True)[:, -1]
        self.lengths = [len(r) for r in rows]
        return logits

    def attach(self, cache: ModelCache, graph: GraphLoop | None, lengths: list[int]) -> None:
        """Decode on a cache someone else prefilled (`engine.prompt_cache`)."""
        self.cache, self.lengths = cache, list(lengths)
        self.graph = graph if self.use_graph and not self.graph_failed else None
        self._graph_fresh = True

    def seen_buffer(self, vocab: int) -> Tensor:
        """The [B, V] 'token already in context' mask the sampler uses (the graph's own)."""
        b = len(self.lengths)
        if self.graph is not None:
            self.graph.seen.zero_()
            return self.graph.seen
        return torch.zeros(b, vocab, dtype=torch.bool, device=self.device)

    def full(self) -> bool:
        assert self.cache is not None
        return self.cache.written >= self.cache.lin_size or max(self.lengths) >= self.max_length

    def _advanced(self) -> None:
        assert self.cache is not None
        self.cache.written += 1
        self.lengths = [n + 1 for n in self.lengths]

    def step(self, ids: Tensor) -> Tensor:
        """Eager: feed one token per row ([B] on device); returns logits [B, V]."""
        assert self.cache is not None
        a = self.cache.written
        pos = torch.tensor(self.lengths, dtype=torch.long, device=self.device)[:, None]
        lin_slot = torch.tensor([a], device=self.device)
        ring = None
        if self.cache.window_mode:
            ring = torch.tensor([self.cache.ring_slot(a)], device=self.device)
        ctx = decode_context(self.model, self.cache, pos, lin_slot, ring)
        ctx.lin_len = a + 1
        ctx.lin_mask = ctx.lin_mask[..., : a + 1]
        out = self.model.forward_cached(ids.view(-1, 1), pos, self.cache, ctx)[:, -1]
        self._advanced()
        return out

    def advance(self, ids: Tensor, params: Any, generator: torch.Generator | None) -> Tensor | None:
        """Graph path: feed `ids`, return the next sampled ids [B]; None if graphs failed."""
        assert self.cache is not None and self.graph is not None
        try:
            if self._graph_fresh:
                pos = torch.tensor(self.lengths, dtype=torch.long, device=self.device)
                self.graph.load(ids, pos, self.cache.written)
                self._graph_fresh = False
            out = self.graph.advance(params, generator)
        except Exception as e:  # noqa: BLE001 - capture can fail on exotic setups
            import warnings

            warnings.warn(
                f"CUDA graph capture failed, decoding eagerly: {one_line(e)}", stacklevel=2
            )
            self.graph, self.graph_failed = None, True
            return None
        self._advanced()
        return out
