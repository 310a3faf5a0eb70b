"""Caches (and, on CUDA, their captured decode graphs), allocated once per batch shape.

A CUDA graph replays fixed addresses, so a graph is only reusable with the cache it was
captured on: the pool keeps (cache, graph) pairs keyed by (batch, pad) and sizes every
cache for `max_length + pad`, so one shape serves every prompt length.
"""

from __future__ import annotations

import threading

from ..model.cache import ModelCache
from ..model.transformer import SWAMLA
from .decoder import GraphLoop


class CachePool:
    """`pool(batch, size, pad) -> (cache, graph or None)`; thread-safe."""

    max_entries = 4  # beyond this the pool starts over (each entry holds a full cache)

    def __init__(
        self, model: SWAMLA, max_length: int, *, graphs: bool, compile: bool = False
    ) -> None:
        self.model = model
        self.max_length = max_length
        self.graphs = graphs
        self.compile = compile
        self._entries: dict[tuple[int, int], tuple[ModelCache, GraphLoop]] = {}
        self._lock = threading.Lock()

    def __call__(self, batch: int, size: int, pad: int) -> tuple[ModelCache, GraphLoop | None]:
        if not self.graphs:
            return self.model.setup_cache(batch, size, pad=pad), None
        key = (batch, pad)
        with self._lock:
            if key not in self._entries:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                cache = self.model.setup_cache(batch, self.max_length + pad, pad=pad)
                self._entries[key] = (cache, GraphLoop(self.model, cache, compile=self.compile))
            return self._entries[key]
