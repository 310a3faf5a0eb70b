"""Per-row operations on a `ModelCache` for continuous batching (see `engine.continuous`).

A continuous batch keeps one cache of `B` rows for the whole run; a row is handed from a
finished prompt to the next one. Three operations make that possible without touching
the layers:

- `row_view(cache, r)`: a batch-1 `ModelCache` whose tensors are views of row `r`, so a
  prompt is prefilled alone (exactly as a run of its own) straight into its row;
  `head_view(cache, k)` the same for rows [0, k), and `move_row` hands a row's whole
  state to another row, so a batch whose queue ran dry steps over its live rows only;
- `compact(cache, used)`: every row's live slots moved to the front of the linear
  caches, in order, so the shared write column can start over;
- `grown(model, cache, size)`: the same cache with more linear slots;
- `put_rows(cache, rows, src)`: rows of `cache` replaced by those of a smaller cache, so
  several prompts are prefilled together in a cache of their own and then moved in
  (`prefill_rows`).

These rely on the linear layout only (a slot is visible through `lin_key_pos`, and the
masks depend on positions, not on where a slot sits); ring caches (SWA "window" mode)
are not supported: `supports(cache)` says so and the caller batches statically then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from typing import Any

import torch
from torch import Tensor

from ..model.cache import ModelCache
from ..model.transformer import SWAMLA

# ModelCache fields indexed by linear slot, and the dimension of that index
SLOT_DIMS: dict[str, int] = {"lin_key_pos": 1, "swa_k": 2, "swa_v": 2, "mla_kv": 1, "mla_ve": 1}


def supports(cache: ModelCache) -> bool:
    """Whether rows of this cache can be reused one by one (linear caches only)."""
    return not cache.window_mode


TensorFn = Callable[[Tensor, int | None], Tensor]


def _map(cache: ModelCache, fn_slot: TensorFn, fn_other: TensorFn) -> dict[str, Any]:
    """Field name -> fn(tensor, slot_dim | None) for every tensor (or list of tensors)."""
    out: dict[str, Any] = {}
    for f in fields(cache):
        v = getattr(cache, f.name)
        dim = SLOT_DIMS.get(f.name)
        fn = fn_slot if dim is not None else fn_other
        if isinstance(v, Tensor):
            out[f.name] = fn(v, dim)
        elif isinstance(v, list):
            out[f.name] = [None if t is None else fn(t, dim) for t in v]
    return out


def row_view(cache: ModelCache, r: int) -> ModelCache:
    """Row `r` of `cache` as a batch-1 cache (views: writes land in `cache`), written 0."""

    def sl(t: Tensor, _dim: int | None) -> Tensor:
        return t[r : r + 1]

    return replace(cache, batch=1, written=0, **_map(cache, sl, sl))


def head_view(cache: ModelCache, k: int) -> ModelCache:
    """Rows [0, k) of `cache` as a batch-k cache (views: writes land in `cache`), with
    the same `written` column."""

    def sl(t: Tensor, _dim: int | None) -> Tensor:
        return t[:k]

    return replace(cache, batch=k, **_map(cache, sl, sl))


def move_row(cache: ModelCache, src: int, dst: int, used: int) -> None:
    """Row `dst` takes row `src`'s state (its first `used` columns and its recurrent
    state); row `src` is left empty (key positions -1)."""

    def copy(t: Tensor, dim: int | None) -> Tensor:
        if dim is None:
            t[dst].copy_(t[src])
        else:
            t[dst].narrow(dim - 1, 0, used).copy_(t[src].narrow(dim - 1, 0, used))
        return t

    _map(cache, copy, copy)
    cache.lin_key_pos[src].fill_(-1)


def compact(cache: ModelCache, used: int) -> int:
    """Move every row's live slots (key_pos >= 0) among the first `used` to the front, in
    order; returns the new number of used columns (the longest row's live slots).

    Attention masks depend on positions only, so the rows' outputs do not change.
    """
    live = cache.lin_key_pos[:, :used] >= 0  # [B, U]
    # stable sort: live slots first, each group in its original order
    order = torch.argsort((~live).to(torch.int8), dim=1, stable=True)  # [B, U]
    n = int(live.sum(dim=1).max().item()) if used else 0

    def gather(t: Tensor, dim: int | None) -> Tensor:
        assert dim is not None
        shape = [1] * t.dim()
        shape[0], shape[dim] = t.shape[0], used
        idx = order.view(shape).expand(*t.shape[:dim], used, *t.shape[dim + 1 :])
        head = t.narrow(dim, 0, used)
        head.copy_(torch.gather(head, dim, idx))
        return t

    def keep(t: Tensor, _dim: int | None) -> Tensor:
        return t

    _map(cache, gather, keep)
    cache.lin_key_pos[:, n:used] = -1
    cache.written = n
    return n


def put_rows(cache: ModelCache, rows: list[int], src: ModelCache) -> None:
    """Rows `rows` of `cache` become the rows of `src` (in order): its `lin_size` columns
    first, every later column of those rows empty; recurrent state copied whole."""
    idx = torch.tensor(rows, dtype=torch.long, device=cache.lin_key_pos.device)
    n = src.lin_size
    cache.lin_key_pos.index_fill_(0, idx, -1)
    for d, s, dim in _tensor_pairs(cache, src):
        (d if dim is None else d.narrow(dim, 0, n)).index_copy_(0, idx, s.to(d.dtype))


def _tensor_pairs(dst: ModelCache, src: ModelCache) -> Iterator[tuple[Tensor, Tensor, int | None]]:
    """Each tensor of `src` with its counterpart in `dst` and its slot dimension (None:
    recurrent state, copied whole)."""
    for name, value in _map(src, lambda t, d: t, lambda t, d: t).items():
        target = getattr(dst, name)
        pairs = zip(target, value, strict=True) if isinstance(value, list) else [(target, value)]
        for d, s in pairs:
            if d is not None and s is not None:
                yield d, s, SLOT_DIMS.get(name)


def prefill_rows(
    model: SWAMLA, cache: ModelCache, rows: list[int], ctxs: list[list[int]]
) -> Tensor:
    """Encode `ctxs` from position 0 in one left-padded forward (as a static batch's
    prefill) in a cache of their own, then move that cache into rows `rows` of `cache`
    (which needs more columns than the longest context); last-token logits [k, V]."""
    dev = cache.lin_key_pos.device
    lmax = max(len(c) for c in ctxs)
    tmp = model.setup_cache(len(rows), lmax, dtype=cache_dtype(cache))
    ids = torch.zeros(len(rows), lmax, dtype=torch.long)
    pos = torch.full((len(rows), lmax), -1, dtype=torch.long)
    for i, c in enumerate(ctxs):
        ids[i, lmax - len(c) :] = torch.tensor(c, dtype=torch.long)
        pos[i, lmax - len(c) :] = torch.arange(len(c))
    ids, pos = ids.to(dev), pos.to(dev)
    ctx = model.step_context(pos, tmp)
    logits = model.forward_cached(ids, pos, tmp, ctx, last_only=True)[:, -1]
    put_rows(cache, rows, tmp)
    return logits


def grown(model: SWAMLA, cache: ModelCache, size: int) -> ModelCache:
    """A cache like `cache` with `size` linear slots (>= its own), holding the same state."""
    new = model.setup_cache(cache.batch, size, dtype=cache_dtype(cache))
    new.written = cache.written
    for d, s, dim in _tensor_pairs(new, cache):
        if dim is None:
            d.copy_(s)
        else:
            d.narrow(dim, 0, s.shape[dim]).copy_(s)
    return new


def cache_dtype(cache: ModelCache) -> torch.dtype | None:
    """The dtype of the attention caches (None: the model has none)."""
    for t in (*cache.mla_kv, *cache.swa_k):
        if t is not None:
            return t.dtype
    return None
