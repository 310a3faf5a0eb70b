"""Turn-to-turn prompt cache: the decode state one chat keeps between its replies.

Without it every chat turn prefills the whole kept history again, so the wait before the
first token grows with the conversation. A `PromptCache` owns one batch-1 `ModelCache` and
remembers which token ids it holds; the next prompt prefills only what follows the part it
can reuse. What can be reused depends on the layer kind:

- attention slots (MLA, SWA in "full" mode) can be cut back to any length: positions are
  absolute from 0, so a shared prefix has the same keys and values; an SWA ring
  ("window" mode) only while it still holds the window before the cut (`_ring_holds`);
- recurrent state (GatedDeltaNet state and conv window, Engram history and conv) cannot be
  rewound: it is reused only as it is (the new prompt extends every id fed so far) or from
  a snapshot: at the start of the last suffix prefill (the turn boundary) and at the end of
  the prompt (the reply start, with its logits, so `/retry` prefills nothing).

Anything else (history trimmed from the front of a recurrent model, an undo behind the
snapshots, a context that slid at the window's end, another model, dtype or quantization)
falls back to a full prefill of the prompt. One stream at a time per cache: the chat keeps
one per conversation and replies one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..model.cache import ModelCache
from ..model.transformer import SWAMLA
from .decoder import GraphLoop

__all__ = ["PromptCache", "common_prefix"]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class _Snap:
    ids: list[int]
    state: list[Tensor] | None  # clones of `ModelCache.recurrent()`; None without recurrence
    logits: Tensor | None  # [1, V] after ids[-1] (the prompt-end snapshot only)


@dataclass(frozen=True)
class Prefilled:
    """One prompt made ready: the cache, its graph, the last logits, and what was reused."""

    cache: ModelCache
    graph: GraphLoop | None
    logits: Tensor  # [1, V]
    reused: int  # prompt tokens not prefilled again


class PromptCache:
    def __init__(
        self,
        model: SWAMLA,
        max_length: int,
        *,
        graphs: bool = False,
        compile: bool = False,
        capture: bool = True,
    ) -> None:
        """`graphs`: decode through this cache's own `GraphLoop` (CUDA graphs; `capture`
        False runs its body eagerly, which is how the CPU tests check its logic)."""
        self.model = model
        self.size = int(max_length) + 1  # a prompt of max_length ids plus the first new one
        self.graphs, self.compile, self.capture = graphs, compile, capture
        self.recurrent = bool(model.has_recurrent_state)
        self.cache: ModelCache | None = None
        self.graph: GraphLoop | None = None
        self.ids: list[int] = []  # the ids whose state the cache holds, in slot order
        self.snaps: list[_Snap] = []
        self._fed: Callable[[], list[int] | None] | None = None
        self._key: tuple[object, ...] | None = None
        self._lock = threading.Lock()
        self.hits = 0  # prompts that reused something (tests and the benchmark read these)
        self.reused_total = 0

    def _fingerprint(self) -> tuple[object, ...]:
        w = self.model.lm_head.weight
        return (w.data_ptr(), w.dtype, w.device, self.model.quantized, self.model.swa_window)

    def invalidate(self) -> None:
        """Forget everything: the next prompt is prefilled in full."""
        with self._lock:
            self.ids, self.snaps, self._fed = [], [], None

    def track(self, fed: Callable[[], list[int] | None]) -> None:
        """The generation now decoding on this cache: `fed()` says which ids it has fed
        (None when it left the cache, e.g. a context that slid); read at the next prompt."""
        self._fed = fed

    def _settle(self) -> None:
        """Bring `ids` up to date with the last generation (or forget all on doubt)."""
        if self._fed is not None:
            fed = self._fed()
            self._fed = None
            if fed is None or self.cache is None or len(fed) != self.cache.written:
                self.ids, self.snaps = [], []
            else:
                self.ids = fed
        key = self._fingerprint()
        if key != self._key or self.cache is None:
            self._key = key
            self.cache = self.model.setup_cache(1, self.size)
            self.graph = (
                GraphLoop(self.model, self.cache, capture=self.capture, compile=self.compile)
                if self.graphs
                else None
            )
            self.ids, self.snaps = [], []

    def _ring_holds(self, cache: ModelCache, k: int) -> bool:
        """Cutting back to `k` slots keeps every key the next query may see: the window
        before position k must not have been overwritten by later positions."""
        if not cache.window_mode or k >= cache.written:
            return True
        assert cache.ring_key_pos is not None
        lo = max(0, k - int(self.model.cfg.swa_window))
        need = range(lo, k)
        slots = torch.tensor([cache.ring_slot(p) for p in need], dtype=torch.long)
        if not len(slots):
            return True
        held = cache.ring_key_pos[0].cpu()[slots]
        return bool((held == torch.arange(lo, k)).all())

    def _choose(self, prompt: list[int]) -> tuple[int, _Snap | None]:
        """How many prompt ids to keep, and the snapshot to restore (None: as it is)."""
        cache = self.cache
        assert cache is not None
        n_prompt = len(prompt)
        if len(self.ids) != cache.written:  # a failed call left the cache behind
            self.ids, self.snaps = [], []
        lcp = common_prefix(self.ids, prompt)
        best: tuple[int, _Snap | None] = (0, None)
        for s in self.snaps:  # exact prompt: its logits are kept, nothing to prefill
            n = len(s.ids)
            exact = s.logits is not None and n == n_prompt <= lcp and s.ids == prompt
            if exact and self._ring_holds(cache, n):
                return n, s
        if not self.recurrent:
            k = min(lcp, n_prompt - 1)
            if k > 0 and self._ring_holds(cache, k):
                best = (k, None)
            return best
        if lcp == len(self.ids) and n_prompt > lcp:
            best = (lcp, None)  # the prompt extends every id fed: the live state
        for s in self.snaps:
            n = len(s.ids)
            usable = best[0] < n < n_prompt and n <= lcp and s.state is not None
            if usable and s.ids == prompt[:n] and self._ring_holds(cache, n):
                best = (n, s)
        return best

    def _cut(self, cache: ModelCache, k: int, snap: _Snap | None) -> None:
        if k == 0:
            cache.reset()
        else:
            if k < cache.written:
                cache.lin_key_pos[:, k:] = -1
                if cache.ring_key_pos is not None:
                    rk = cache.ring_key_pos
                    rk.masked_fill_(rk >= k, -1)
                cache.written = k
            if snap is not None and snap.state is not None:
                for t, v in zip(cache.recurrent(), snap.state, strict=True):
                    t.copy_(v)
        self.ids = self.ids[:k]

    def _state(self) -> list[Tensor] | None:
        assert self.cache is not None
        return [t.clone() for t in self.cache.recurrent()] if self.recurrent else None

    def prefill(self, prompt: list[int]) -> Prefilled:
        """Make the cache hold `prompt` (1 <= len <= max_length) and return its last logits."""
        with self._lock, torch.inference_mode():
            self._settle()
            cache = self.cache
            assert cache is not None
            k, snap = self._choose(prompt)
            try:
                logits = self._fill(cache, prompt, k, snap)
            except BaseException:
                self.ids, self.snaps = [], []
                raise
            if k:
                self.hits += 1
                self.reused_total += k
            return Prefilled(cache, self.graph, logits, k)

    def _fill(self, cache: ModelCache, prompt: list[int], k: int, snap: _Snap | None) -> Tensor:
        self._cut(cache, k, snap)
        if snap is not None and k == len(prompt):
            assert snap.logits is not None
            return snap.logits.clone()
        boundary = _Snap(prompt[:k], self._state(), None) if k and self.recurrent else None
        dev = cache.lin_key_pos.device
        ids = torch.tensor([prompt[k:]], dtype=torch.long, device=dev)
        pos = torch.arange(k, len(prompt), dtype=torch.long, device=dev)[None]
        ctx = self.model.step_context(pos, cache)
        logits = self.model.forward_cached(ids, pos, cache, ctx, last_only=True)[:, -1]
        self.ids = list(prompt)
        end = _Snap(list(prompt), self._state(), logits.clone())
        self.snaps = [s for s in (boundary, end) if s is not None]
        return logits
