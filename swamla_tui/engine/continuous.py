"""Continuous batching: a fixed number of rows ("slots"), each handed to the next queued
prompt as soon as its own prompt finishes (EOS, stop string, token budget, cancel).

Static batching (`Generation` over a chunk) runs every chunk until its longest row ends;
here no row waits for another. The rules that make each prompt's tokens those of a run
of its own:

- Admission: the row's caches are reset (key positions -1, recurrent DeltaNet/Engram
  state zeroed) and its prompt waits, not decoding, until it is prefilled. A prefill
  stops every decoding row for about as long as a decode step (it reads every weight
  once), so new rows are prefilled *together*: short prompts in one left-padded forward
  (as a static batch prefills its chunk) whose caches are then copied into their rows
  (`slots.put_rows`): every row waiting when the prefill is due, which is at once by
  default (`group_min` rows waiting, a row waited `max_wait` steps, no row decodes, or
  the queue is empty). A prompt longer than `chunk` tokens is prefilled
  alone in its row (`slots.row_view`), `chunk` tokens between two decode steps, so it
  never stalls the batch for longer than one chunk. Where the model allows it
  (`SWAMLA.packable`: no DeltaNet or Engram state) and other rows decode, the prefills
  instead ride along the next decode step (`_riders`): each prompt (a long one, one
  chunk) in its own row, through `SWAMLA.forward_packed`, so the step reads every
  weight once for both.
- Decode: one forward for all rows, one token each, written at a shared cache column;
  each row keeps its own positions, and masks come from positions alone, so a row never
  sees another prompt's (or its slot's previous prompt's) entries. Rows without a prompt,
  or waiting for a prefill, feed a pad (position -1; a row between two chunks keeps its
  recurrent state, which a one-token pad step would move). When the columns run out, the live slots are compacted to
  the front (`slots.compact`) and the cache grows if that does not free enough. Once the
  queue is empty, finished rows are not refilled: the last rows move down into the holes
  (`slots.move_row`) and a step runs over the occupied rows only (`slots.head_view`).
- Sampling: every row has its own generator seeded from its prompt's `seed`, and draws
  with `sample` on its own logits, as a run of its own does; the settings (`params`) are
  copied when the prompt is admitted, so a change applies to prompts not yet started.
- A row whose context reaches `max_length` is re-encoded from its most recent tokens, as
  `Generation` does (formats v1 §6): they wait for a prefill like a new prompt.

Decoding is eager (no CUDA graph): rows change between steps.

One piece at ~470 lines: admission, the prefill schedule (alone, grouped, or riding along
a decode step) and the decode step share each row's state and one invariant (a row's
cached tokens lie below the shared column `used`), which is easier to check in one place
than across modules. The row types and per-row draws live in `rows`, cache surgery in
`slots`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from ..base.params import SamplingParams
from ..base.stops import StopText
from ..model.cache import ModelCache, Packed
from ..model.transformer import SWAMLA
from .decode_loop import RowState
from .decoder import decode_context
from .rows import Finished, Queued, Slot, draw, draw_rows
from .slots import compact, grown, head_view, move_row, prefill_rows, row_view
from .text import IncrementalDecoder, TextCodec

__all__ = ["ContinuousBatch", "Finished", "Queued"]


class ContinuousBatch:
    """Runs queued prompts through `slots` rows; iterate `run(queue)` for the results.

    `params` is read (copied) when each prompt is admitted; `cancel` ends the run within
    one token: rows in flight finish "cancelled", prompts still queued come back with no
    row. Stop strings need `codec` (to see the text).
    """

    headroom = 1.5  # linear slots per row: this many times the expected longest context
    chunk = 128  # a longer context is prefilled alone, this many tokens between decode steps
    group_tokens = 2048  # most (padded) prompt tokens one grouped prefill encodes
    max_wait = 4  # decode steps a new row may wait for others to be prefilled with it
    slack = 32  # dead columns (beyond the longest row) that make a compaction worth its copy
    pack = True  # prefills ride along decode steps where the model allows (`SWAMLA.packable`)

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
        self.rows: list[Slot | None] = [None] * slots
        self.seen = torch.zeros(slots, self.vocab, dtype=torch.bool, device=self.device)
        self.expect = 1  # the longest context the queue is expected to reach
        # waiting rows that make a prefill due while others decode: 1 = at once (rows freed
        # by the same step share it). Waiting for more saves weight passes but costs decode
        # steps: on the mixed benchmark (24 prompts, 8 rows) 2 rows / 4 steps gave 13
        # prefill forwards instead of 17 for 248 decode steps instead of 242, a loss when a
        # step costs more than a weight pass
        self.group_min = 1
        self._riders: list[tuple[int, int]] = []  # prefills due in the next decode step
        self.prefills = 0  # contexts prefilled (prompts admitted, re-encodes)
        self.prefill_calls = 0  # prefill forwards of their own (grouped prefills and chunks)
        self.rides = 0  # prompt chunks prefilled inside a decode step (`_riders`)
        self.compactions = 0
        self.moves = 0  # rows moved down by `_pack`
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

    def _column(self, floor: int = 0) -> int:
        """A free shared column for the next decode step (compacting/growing as needed),
        at least `floor` (prefills riding along the step write the columns below it).

        Every row attends over all `used` columns, so the cache is also compacted once a
        quarter of them (at least `slack`) lie beyond the longest row's slots: on the mixed
        benchmark a decode step cost 123 ms against static batching's 119 when columns were
        only reclaimed with the cache full."""
        cache = self._ensure(1)
        longest = max((s.fed for s in self.rows if s is not None), default=0)
        dead = self.used - longest
        full = self.used >= cache.lin_size
        if full or dead >= max(self.slack, self.used // 4):
            self.used = compact(cache, self.used)
            self.compactions += 1
            if (
                full and self.used > cache.lin_size // 2
            ):  # little freed: more room, fewer compactions
                cache = self._ensure(2 * cache.lin_size)
        if floor > self.used:
            self.used = floor
            cache = self._ensure(self.used + 1)
        cache.written = self.used
        return self.used

    # ------------------------------------------------------------------ rows
    def _chunk(self, r: int) -> Tensor | None:
        """Encode row `r`'s next (at most `chunk`) pending tokens alone, in its own row at
        columns [fed, fed + n); logits [1, V] once the whole context is in, else None.

        A row's prefilled tokens always fill its columns [0, fed) (chunks follow each
        other; decode steps write pads there at most, compaction keeps them in front), and
        `used` covers them, so the shared decode column never lands among them."""
        s = self._slot(r)
        fed, n = s.fed, min(self.chunk, len(s.pending))
        self._ensure(fed + n + 1)
        c = self._prefill_call(r, n)
        logits = self.model.forward_cached(c.idx, c.pos, c.cache, c.ctx, last_only=True)[:, -1]
        self.used = max(self.used, fed + n)  # columns beyond every row's live slots
        self.prefill_calls += 1
        if s.pending:
            return None
        self.prefills += 1
        return logits

    def _group(self, rows: list[int]) -> Tensor:
        """Prefill the whole (short) pending contexts of `rows` together; logits [k, V]."""
        ctxs = [self._slot(r).pending for r in rows]
        lmax = max(len(c) for c in ctxs)
        logits = prefill_rows(self.model, self._ensure(lmax + 1), rows, ctxs)
        for c in ctxs:
            c.clear()
        self.used = max(self.used, lmax)
        self.prefill_calls += 1
        self.prefills += len(rows)
        return logits

    def _prefill_due(self, todo: deque[Queued]) -> list[int]:
        """Prefill what is due (see the module docstring); rows that finished on their
        first token."""
        self._riders = []
        waiting = [r for r, s in enumerate(self.rows) if s is not None and s.pending]
        if not waiting:
            return []
        decoding = any(s is not None and not s.pending for s in self.rows)
        done: list[int] = []
        short = [r for r in waiting if self._short(r)]
        long = [r for r in waiting if r not in short]
        if decoding and self.pack and self.model.packable:
            self._riders = self._pick_riders(short, long)
            return []
        if short and (
            not decoding
            or not todo
            or len(short) >= self.group_min
            or max(self._slot(r).waited for r in short) >= self.max_wait
        ):
            while short:
                group: list[int] = []
                lmax = 0
                for r in short:  # the longest group within the token budget (>= one row)
                    n = max(lmax, len(self._slot(r).pending))
                    if group and n * (len(group) + 1) > self.group_tokens:
                        break
                    group.append(r)
                    lmax = n
                short = short[len(group) :]
                one = self._chunk(group[0]) if len(group) == 1 else None
                logits = self._group(group) if len(group) > 1 else one
                assert logits is not None
                for i, r in enumerate(group):
                    self._prefilled(r)
                    if self._take(r, self._draw(r, logits[i : i + 1])):
                        done.append(r)
        if long:  # one chunk of the longest-waiting long context per decode step
            r = min(long, key=lambda q: -self._slot(q).waited)
            logits = self._chunk(r)
            if logits is not None:
                self._prefilled(r)
                if self._take(r, self._draw(r, logits)):
                    done.append(r)
        return done

    def _pick_riders(self, short: list[int], long: list[int]) -> list[tuple[int, int]]:
        """(row, tokens) to prefill inside the next decode step: every waiting short prompt
        (within `group_tokens`) and one chunk of the longest-waiting long one. A weight pass
        is then shared instead of added: on the mixed benchmark 17 prefill forwards of
        their own cost ~0.2 s each, against ~0.13 s for a decode step of 8 rows."""
        riders: list[tuple[int, int]] = []
        budget = self.group_tokens
        for r in short:
            n = len(self._slot(r).pending)
            if riders and n > budget:
                break
            riders.append((r, n))
            budget -= n
        if long:
            r = min(long, key=lambda q: -self._slot(q).waited)
            riders.append((r, min(self.chunk, len(self._slot(r).pending))))
        return riders

    def _prefill_call(self, r: int, n: int) -> Packed:
        """The call that encodes row `r`'s next `n` pending tokens alone, in its own row at
        columns [fed, fed + n) (its context built, the tokens taken off `pending`)."""
        assert self.cache is not None
        s = self._slot(r)
        fed = s.fed
        view = row_view(self.cache, r)
        if fed == 0:
            view.reset()  # the row's slots and recurrent state (views: the shared cache's)
        view.written = fed
        pos = torch.arange(fed, fed + n, device=self.device)[None]  # [1, n]
        x = torch.tensor([s.pending[:n]], dtype=torch.long, device=self.device)
        del s.pending[:n]
        return Packed(x, pos, view, self.model.step_context(pos, view), last_only=True)

    def _ride(self, riders: Sequence[tuple[int, int]]) -> list[Packed]:
        """The calls that prefill `riders` inside the decode step (`_chunk`'s, not run yet)."""
        self.rides += len(riders)
        return [self._prefill_call(r, n) for r, n in riders]

    def _prefilled(self, r: int) -> None:
        """The row's prompt logits are ready (its first prefill; a re-encode keeps it)."""
        row = self._slot(r).row
        row.t_prefilled = row.t_prefilled or time.perf_counter()

    def _short(self, r: int) -> bool:
        s = self._slot(r)
        return s.fed == 0 and len(s.pending) <= self.chunk

    def _slot(self, r: int) -> Slot:
        s = self.rows[r]
        assert s is not None
        return s

    def _draw(self, r: int, logits: Tensor) -> int:
        return draw(self._slot(r), self.seen[r : r + 1], logits)

    def _draw_all(self, live: list[int], logits: Tensor) -> dict[int, int]:
        return draw_rows({r: self._slot(r) for r in live}, self.seen, logits)

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

    def _admit(self, r: int, item: Queued, ids: list[int]) -> None:
        p = self.params.copy()
        ids = ids or [self.eos_id if self.eos_id is not None else 0]
        row = RowState(prompt=ids[-self.max_length :], truncated=len(ids) > self.max_length)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(p.seed if p.seed is not None else random.getrandbits(63))
        limit = max(1, int(item.limit if item.limit is not None else p.max_new_tokens))
        st = StopText(self.stops) if self.stops else None
        dec = IncrementalDecoder(self.codec) if self.stops else None
        row.t_start = time.perf_counter()
        self.rows[r] = Slot(item.index, row, p, limit, gen, len(row.prompt),
                             row.t_start, st, dec, list(row.prompt))  # fmt: skip
        self.seen[r].zero_()
        self.seen[r, torch.tensor(row.prompt, device=self.device).clamp(0, self.vocab - 1)] = True

    def _reencode(self, r: int) -> None:
        """Row `r`'s context reached max_length: keep its most recent tokens (as
        `Generation._reencode` does for a run of its own); they wait to be prefilled."""
        s = self._slot(r)
        ctx = s.row.prompt + s.row.new
        if len(ctx) >= self.max_length:
            keep = max(1, self.max_length - max(1, self.max_length // 4))
            ctx = ctx[-keep:]
        s.length, s.pending, s.waited = len(ctx), list(ctx), 0

    def _finish(self, r: int) -> Finished:
        s = self.rows[r]
        assert s is not None
        self.rows[r] = None
        if self.cache is not None:  # its slots are dead: a compaction drops them
            self.cache.lin_key_pos[r].fill_(-1)
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
        """Admit queued prompts into free rows; full rows wait to be re-encoded."""
        for r in range(self.nslots):
            s = self.rows[r]
            if s is not None and not s.pending and s.length >= self.max_length:
                self._reencode(r)
            while self.rows[r] is None and todo and not self.cancel.is_set():
                item = todo.popleft()
                if isinstance(item.ids, str):
                    yield Finished(item.index, None, 0.0, item.ids)
                    continue
                self._admit(r, item, item.ids)

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
            if not todo:
                self._pack()
            done = self._prefill_due(todo)
            for r in done:
                yield self._finish(r)
            full = any(s is not None and not s.pending and s.length >= self.max_length
                       for s in self.rows)  # fmt: skip
            if done or full:
                continue  # refill the freed rows (re-encode the full ones) first
            live = [r for r, s in enumerate(self.rows) if s is not None and not s.pending]
            if not live:
                if any(s is not None for s in self.rows):
                    continue  # rows wait for a prefill, which is due when nothing decodes
                return
            riders, self._riders = self._riders, []
            logits, ridden = self._step(riders)
            toks = self._draw_all(live, logits)
            for r in live:
                if self._take(r, toks[r]):
                    yield self._finish(r)
            for (r, _), lg in zip(riders, ridden, strict=True):
                if not self._slot(r).pending:  # its whole context is in: its first token
                    self.prefills += 1
                    self._prefilled(r)
                    if self._take(r, self._draw(r, lg[:, -1])):
                        yield self._finish(r)

    def _pack(self) -> None:
        """With the queue empty, move the highest occupied rows into the free rows below
        them, so that decode steps run over rows [0, k) only: a step's cost grows with its
        rows (262M benchmark model, 2 threads: 60 ms for one row, ~120 for eight), and on
        the mixed benchmark a quarter of the row-steps fell in that tail."""
        while self.cache is not None:
            occupied = [r for r, s in enumerate(self.rows) if s is not None]
            free = [r for r, s in enumerate(self.rows) if s is None]
            if not occupied or not free or free[0] > occupied[-1]:
                return
            src, dst = occupied[-1], free[0]
            move_row(self.cache, src, dst, self.used)
            self.rows[dst], self.rows[src] = self.rows[src], None
            self.seen[dst].copy_(self.seen[src])
            self.moves += 1

    def _step(self, riders: Sequence[tuple[int, int]] = ()) -> tuple[Tensor, list[Tensor]]:
        """One token for every row in flight (pads elsewhere) among rows [0, k), k the
        last occupied row + 1, and the `riders`' prefill chunks in the same forward;
        logits [k, V] and each rider's [1, 1, V]."""
        floor = max((self._slot(r).fed + n for r, n in riders), default=0)
        a = self._column(floor)
        assert self.cache is not None
        k = 1 + max(r for r, s in enumerate(self.rows) if s is not None)
        cache = self.cache if k == self.nslots else head_view(self.cache, k)
        ids, pos = [0] * k, [-1] * k
        for r, s in enumerate(self.rows[:k]):
            if s is not None and s.pending:
                s.waited += 1
            elif s is not None:
                ids[r], pos[r] = s.row.new[-1], s.length
                s.length += 1
        x = torch.tensor(ids, dtype=torch.long, device=self.device)[:, None]  # [B, 1]
        p = torch.tensor(pos, dtype=torch.long, device=self.device)[:, None]  # [B, 1]
        slot = torch.tensor([a], device=self.device)
        ctx = decode_context(self.model, cache, p, slot, None, a + 1)
        # a pad still moves recurrent state (DeltaNet, conv windows, Engram history) in a
        # one-token step: a row between two chunks of its prompt keeps its own
        mid = [r for r, s in enumerate(self.rows[:k]) if s is not None and s.pending and s.fed]
        saved = [(r, t, t[r].clone()) for r in mid for t in cache.recurrent()]
        if riders:
            out, *ridden = self.model.forward_packed(
                [Packed(x, p, cache, ctx), *self._ride(riders)]
            )
        else:
            out, ridden = self.model.forward_cached(x, p, cache, ctx), []
        for r, t, v in saved:
            t[r].copy_(v)
        self.used = a + 1
        self.cache.written = self.used
        self.steps += 1
        return out[:, -1], ridden
