"""Continuous batching: a fixed number of rows ("slots"), each handed to the next queued
prompt as soon as its own prompt finishes (EOS, stop string, token budget, cancel).

Static batching (`Generation` over a chunk) runs every chunk until its longest row ends;
here no row waits for another. The rules that make each prompt's tokens those of a run
of its own:

- Admission: the row's caches are reset (key positions -1, recurrent DeltaNet/Engram
  state zeroed) and the prompt is prefilled *alone* (batch 1) straight into its row
  (`slots.row_view`), between two decode steps of the others. Prefills are not batched
  with each other: a lone prefill is the same computation as the prompt's own run.
- Decode: one forward for all rows, one token each, written at a shared cache column;
  each row keeps its own positions, and masks come from positions alone, so a row never
  sees another prompt's (or its slot's previous prompt's) entries. Rows without a prompt
  feed a pad (position -1). When the columns run out, the live slots are compacted to
  the front (`slots.compact`) and the cache grows if that does not free enough.
- Sampling: every row has its own generator seeded from its prompt's `seed`, and draws
  with `sample` on its own logits, as a run of its own does; the settings (`params`) are
  copied when the prompt is admitted, so a change applies to prompts not yet started.
- A row whose context reaches `max_length` is re-encoded alone from its most recent
  tokens, as `Generation` does (formats v1 §6).

Decoding is eager (no CUDA graph): rows change between steps.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..base.params import SamplingParams
from ..base.stops import StopText
from ..model.cache import ModelCache
from ..model.transformer import SWAMLA
from .decode_loop import RowState
from .decoder import decode_context
from .sampling import sample
from .slots import compact, grown, row_view
from .text import IncrementalDecoder, TextCodec


@dataclass
class Queued:
    """One prompt to run: its ids, or the one-line reason it cannot run; `limit` overrides
    the params' max_new_tokens for this prompt (None: use the params)."""

    index: int
    ids: list[int] | str
    limit: int | None = None


@dataclass
class Finished:
    """One prompt's outcome. `row` is None for a prompt that never ran (error, or
    cancelled while queued); `stop`/`decoder` hold its text when stop strings were given."""

    index: int
    row: RowState | None
    seconds: float
    error: str = ""
    stop: StopText | None = None
    decoder: IncrementalDecoder | None = None


@dataclass
class _Slot:
    index: int
    row: RowState
    params: SamplingParams
    limit: int
    gen: torch.Generator
    length: int  # tokens of this row in the cache (= the next token's position)
    t0: float
    stop: StopText | None
    decoder: IncrementalDecoder | None

    def result(self) -> Finished:
        return Finished(self.index, self.row, time.perf_counter() - self.t0, "",
                        self.stop, self.decoder)  # fmt: skip


class ContinuousBatch:
    """Runs queued prompts through `slots` rows; iterate `run(queue)` for the results.

    `params` is read (copied) when each prompt is admitted; `cancel` ends the run within
    one token: rows in flight finish "cancelled", prompts still queued come back with no
    row. Stop strings need `codec` (to see the text).
    """

    headroom = 1.5  # linear slots per row: this many times the expected longest context

    def __init__(
        self,
        model: SWAMLA,
        params: SamplingParams,
        *,
        slots: int,
        max_length: int,
        eos_id: int | None,
        cancel: threading.Event | None = None,
        stop: Sequence[str] = (),
        codec: TextCodec | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError("continuous batching needs at least one slot")
        self.model, self.params, self.nslots = model, params, slots
        self.max_length, self.eos_id = max_length, eos_id
        self.cancel = cancel or threading.Event()
        self.stops = tuple(s for s in stop if s)
        if self.stops and codec is None:
            raise ValueError("stop strings need a codec")
        self.codec = codec
        self.device = model.lm_head.weight.device  # tied to the embedding
        self.vocab = int(model.cfg.vocab_size)
        self.cache: ModelCache | None = None
        self.used = 0  # cache columns written by decode steps or prefills (shared by rows)
        self.rows: list[_Slot | None] = [None] * slots
        self.seen = torch.zeros(slots, self.vocab, dtype=torch.bool, device=self.device)
        self.expect = 1  # the longest context the queue is expected to reach
        self.prefills = 0
        self.compactions = 0
        self.steps = 0

    # ------------------------------------------------------------------ the cache
    def _ensure(self, need: int) -> ModelCache:
        """The cache, with at least `need` linear slots (allocated on first use)."""
        if self.cache is None:
            size = max(need, int(max(need, self.expect) * self.headroom))
            self.cache = self.model.setup_cache(self.nslots, size)
            self.cache.reset()
        elif self.cache.lin_size < need:
            self.cache = grown(self.model, self.cache, max(need, 2 * self.cache.lin_size))
        return self.cache

    def _column(self) -> int:
        """A free shared column for the next decode step (compacting/growing as needed)."""
        cache = self._ensure(1)
        if self.used >= cache.lin_size:
            self.used = compact(cache, self.used)
            self.compactions += 1
            if self.used > cache.lin_size // 2:  # little was freed: more room, fewer compactions
                cache = self._ensure(2 * cache.lin_size)
        cache.written = self.used
        return self.used

    # ------------------------------------------------------------------ rows
    def _prefill(self, r: int, ids: list[int]) -> Tensor:
        """Reset row `r` and encode `ids` in it alone from position 0; logits [1, V]."""
        cache = self._ensure(len(ids) + 1)
        view = row_view(cache, r)
        view.reset()  # the row's slots and recurrent state (views: the shared cache's)
        pos = torch.arange(len(ids), device=self.device)[None]  # [1, L]
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        ctx = self.model.step_context(pos, view)
        logits = self.model.forward_cached(x, pos, view, ctx)[:, -1]
        self.used = max(self.used, len(ids))  # columns beyond every row's live slots
        self.prefills += 1
        return logits

    def _draw(self, r: int, logits: Tensor) -> int:
        s = self.rows[r]
        assert s is not None
        p = s.params
        tok = sample(
            logits,
            self.seen[r : r + 1],
            temperature=float(p.temperature),
            top_k=int(p.top_k),
            top_p=float(p.top_p),
            repetition_penalty=float(p.repetition_penalty),
            generator=s.gen,
        )
        return int(tok[0])

    def _draw_all(self, live: list[int], logits: Tensor) -> dict[int, int]:
        """`_draw` for every row in flight, one `sample` call per distinct setting: each
        row's noise comes from its own generator, drawn as a call of its own draws it."""
        groups: dict[tuple[float, int, float, float], list[int]] = {}
        for r in live:
            s = self.rows[r]
            assert s is not None
            p = s.params
            key = (float(p.temperature), int(p.top_k), float(p.top_p),
                   float(p.repetition_penalty))  # fmt: skip
            groups.setdefault(key, []).append(r)
        out: dict[int, int] = {}
        for (temp, k, top_p, pen), rows in groups.items():
            noise = None
            if temp > 0:
                gens = [s.gen for r in rows if (s := self.rows[r]) is not None]
                noise = torch.cat([
                    torch.empty(1, self.vocab, device=self.device).exponential_(1.0, generator=g)
                    for g in gens
                ])  # fmt: skip
            idx = torch.tensor(rows, device=self.device)
            ids = sample(logits[idx], self.seen[idx], temperature=temp, top_k=k, top_p=top_p,
                         repetition_penalty=pen, noise=noise).tolist()  # fmt: skip
            out.update(zip(rows, ids, strict=True))
        return out

    def _take(self, r: int, tok: int) -> bool:
        """Record row `r`'s new token as `Generation` does; True when the row finished."""
        s = self.rows[r]
        assert s is not None
        row, now = s.row, time.perf_counter()
        row.new.append(tok)
        row.t_first = row.t_first or now
        row.t_last = now
        self.seen[r, tok] = True
        if self.eos_id is not None and tok == self.eos_id:
            row.finish = "eos"
        elif len(row.new) >= s.limit:
            row.finish = "length"
        if s.stop is not None and s.decoder is not None and tok != self.eos_id:
            s.stop.push(s.decoder.push(tok))
            if s.stop.stopped and row.finish is None:
                row.finish = "stop"
        return row.finish is not None

    def _admit(self, r: int, item: Queued, ids: list[int]) -> bool:
        p = self.params.copy()
        ids = ids or [self.eos_id if self.eos_id is not None else 0]
        row = RowState(prompt=ids[-self.max_length :], truncated=len(ids) > self.max_length)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(p.seed if p.seed is not None else random.getrandbits(63))
        limit = max(1, int(item.limit if item.limit is not None else p.max_new_tokens))
        st = StopText(self.stops) if self.stops else None
        dec = IncrementalDecoder(self.codec) if self.stops else None
        row.t_start = time.perf_counter()
        self.rows[r] = _Slot(item.index, row, p, limit, gen, len(row.prompt),
                             row.t_start, st, dec)  # fmt: skip
        self.seen[r].zero_()
        self.seen[r, torch.tensor(row.prompt, device=self.device).clamp(0, self.vocab - 1)] = True
        logits = self._prefill(r, row.prompt)
        row.t_prefilled = time.perf_counter()
        return self._take(r, self._draw(r, logits))

    def _reencode(self, r: int) -> bool:
        """Row `r`'s context reached max_length: keep its most recent tokens (as
        `Generation._reencode` does for a run of its own) and encode them alone."""
        s = self.rows[r]
        assert s is not None
        ctx = s.row.prompt + s.row.new
        if len(ctx) >= self.max_length:
            keep = max(1, self.max_length - max(1, self.max_length // 4))
            ctx = ctx[-keep:]
        s.length = len(ctx)
        return self._take(r, self._draw(r, self._prefill(r, ctx)))

    def _finish(self, r: int) -> Finished:
        s = self.rows[r]
        assert s is not None
        self.rows[r] = None
        return s.result()

    # ------------------------------------------------------------------ the loop
    def run(self, queue: Iterable[Queued]) -> Iterator[Finished]:
        todo = deque(queue)
        limit = int(self.params.max_new_tokens)
        self.expect = min(
            self.max_length + 1,
            max((len(q.ids) + (q.limit or limit) for q in todo if isinstance(q.ids, list)),
                default=1),
        )  # fmt: skip
        with torch.inference_mode():
            yield from self._run(todo)

    def _fill(self, todo: deque[Queued]) -> Iterator[Finished]:
        """Admit queued prompts into free rows and re-encode full rows until stable."""
        changed = True
        while changed and not self.cancel.is_set():
            changed = False
            for r in range(self.nslots):
                s = self.rows[r]
                if s is not None and s.length >= self.max_length:
                    changed = True
                    if self._reencode(r):
                        yield self._finish(r)
                while self.rows[r] is None and todo and not self.cancel.is_set():
                    item = todo.popleft()
                    if isinstance(item.ids, str):
                        yield Finished(item.index, None, 0.0, item.ids)
                        continue
                    changed = True
                    if self._admit(r, item, item.ids):
                        yield self._finish(r)

    def _run(self, todo: deque[Queued]) -> Iterator[Finished]:
        while True:
            yield from self._fill(todo)
            if self.cancel.is_set():
                for r, s in enumerate(self.rows):
                    if s is not None:
                        s.row.finish = "cancelled"
                        yield self._finish(r)
                while todo:
                    item = todo.popleft()
                    yield Finished(item.index, None, 0.0)
                return
            live = [r for r, s in enumerate(self.rows) if s is not None]
            if not live:
                return
            toks = self._draw_all(live, self._step())
            for r in live:
                if self._take(r, toks[r]):
                    yield self._finish(r)

    def _step(self) -> Tensor:
        """One token for every row in flight (pads elsewhere); logits [B, V]."""
        a = self._column()
        cache = self.cache
        assert cache is not None
        ids, pos = [0] * self.nslots, [-1] * self.nslots
        for r, s in enumerate(self.rows):
            if s is not None:
                ids[r], pos[r] = s.row.new[-1], s.length
                s.length += 1
        x = torch.tensor(ids, dtype=torch.long, device=self.device)[:, None]  # [B, 1]
        p = torch.tensor(pos, dtype=torch.long, device=self.device)[:, None]  # [B, 1]
        slot = torch.tensor([a], device=self.device)
        ctx = decode_context(self.model, cache, p, slot, None, a + 1)
        out = self.model.forward_cached(x, p, cache, ctx)[:, -1]
        self.used = a + 1
        cache.written = self.used
        self.steps += 1
        return out
