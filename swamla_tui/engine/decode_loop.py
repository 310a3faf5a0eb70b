"""The decode loop shared by streaming, `generate_ids` and batch runs."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from ..base.experts import TokenRouting
from ..base.params import SamplingParams
from ..base.timings import ReplyTimings
from .decoder import BatchDecoder
from .logprobs import TokenLogprobs, record_logprobs
from .routing import StepRoutes
from .sampling import sample_with

if TYPE_CHECKING:
    from .prompt_cache import PromptCache


@dataclass
class RowState:
    prompt: list[int]
    new: list[int] = field(default_factory=list)
    finish: str | None = None  # "length" | "stop" | "eos" | "cancelled"
    truncated: bool = False
    t_start: float | None = None  # the row's prompt started (perf_counter)
    t_prefilled: float | None = None  # its prompt's logits were ready
    t_first: float | None = None
    t_last: float | None = None
    logprobs: list[TokenLogprobs] = field(default_factory=list)  # one per new id, when asked
    routes: list[TokenRouting] = field(default_factory=list)  # one per new id, when asked

    def timings(self, cached: int = 0) -> ReplyTimings:
        """The row's figures (`base.timings`): prefill and first token from its start."""
        t0 = self.t_start
        return ReplyTimings(
            prompt_tokens=len(self.prompt),
            cached_tokens=cached,
            prefill_s=(self.t_prefilled - t0) if t0 is not None and self.t_prefilled else 0.0,
            ttft_s=(self.t_first - t0) if t0 is not None and self.t_first else None,
            generated_tokens=len(self.new),
            decode_s=(self.t_last - self.t_first) if self.t_first and self.t_last else 0.0,
        )


class Generation:
    """One batched generation. Iterate it to advance one token per step.

    Each step yields the list of ids produced for that step (None for rows that were
    already finished). The consumer may call `finish(i, reason)` between steps (stop
    strings are a text-level decision). `params` is read before every token, so a caller
    may change it mid-generation; `cancel` stops within one token.
    """

    def __init__(
        self,
        model: Any,
        prompts: list[list[int]],
        params: SamplingParams,
        *,
        max_length: int,
        eos_id: int | None,
        cancel: threading.Event | None = None,
        use_graph: bool = False,
        cache_pool: Any = None,
        logprobs: int | None = None,
        prompt_cache: PromptCache | None = None,
        routing: bool = False,
    ) -> None:
        if not prompts:
            raise ValueError("no prompts")
        self.model = model
        self.params = params
        self.max_length = max_length
        self.eos_id = eos_id
        self.cancel_event = cancel or threading.Event()
        self.rows: list[RowState] = []
        for p in prompts:
            ids = list(p) or [eos_id if eos_id is not None else 0]
            trunc = len(ids) > max_length
            self.rows.append(RowState(prompt=ids[-max_length:], truncated=trunc))
        # log-probabilities need each step's logits on the host loop: decode eagerly then
        self.logprobs = logprobs if logprobs and logprobs > 0 else None
        self._pending: list[TokenLogprobs] | None = None
        # routing: the MoE hooks see each forward (eager too); a model without MoE or
        # Engram layers has nothing to record
        steps = StepRoutes(model) if routing else None
        self.routes = steps if steps is not None and steps.active else None
        self._pending_routes: list[TokenRouting] | None = None
        self.dec = BatchDecoder(
            model,
            max_length=max_length,
            use_graph=use_graph and self.logprobs is None and self.routes is None,
            cache_pool=cache_pool,
        )
        self.device = model.lm_head.weight.device  # tied to the embedding
        # the MoE routing of a prompt comes from its forward, and a prompt-cache hit may
        # have none (a /retry reuses the stored logits): a recording generation prefills
        self.prompt_cache = prompt_cache if len(self.rows) == 1 and self.routes is None else None
        self.reused = 0  # prompt tokens the prompt cache did not prefill again
        self.t_start = time.perf_counter()
        self.t_prefill_done: float | None = None
        for r in self.rows:
            r.t_start = self.t_start

    def finish(self, i: int, reason: str) -> None:
        if self.rows[i].finish is None:
            self.rows[i].finish = reason

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def done(self) -> bool:
        return all(r.finish is not None for r in self.rows)

    def _context(self, r: RowState) -> list[int]:
        return r.prompt + r.new

    def __iter__(self) -> Iterator[list[int | None]]:
        with torch.inference_mode():
            if self.routes is None:
                yield from self._run()
                return
            with self.routes:
                yield from self._run()

    def _sample(
        self, logits: torch.Tensor, seen: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        p = self.params
        ids = self._draw(logits, seen, gen)
        if self.logprobs is not None:  # before `seen` learns these ids, as the sampler saw it
            self._pending = record_logprobs(logits, seen, ids, p, self.logprobs)
        if self.routes is not None:  # the routing of the forward that gave these logits
            self._pending_routes = self.routes.take()
        return ids

    def _draw(self, logits: torch.Tensor, seen: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return sample_with(logits, seen, self.params, generator=gen)

    def _prefill(
        self, rows: list[list[int]], capacity: int, old_seen: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.dec.prefill(rows, capacity=capacity)
        seen = self.dec.seen_buffer(self.model.cfg.vocab_size)
        if old_seen is not None:
            if old_seen is not seen:
                seen.copy_(old_seen)
        else:
            vocab = self.model.cfg.vocab_size
            for i, r in enumerate(self.rows):
                seen[i, torch.tensor(r.prompt, device=self.device).clamp(0, vocab - 1)] = True
        return logits, seen

    def _prefill_cached(self, pc: PromptCache) -> tuple[torch.Tensor, torch.Tensor]:
        r, dec = self.rows[0], self.dec
        got = pc.prefill(r.prompt)
        self.reused = got.reused
        dec.attach(got.cache, got.graph, [len(r.prompt)])
        seen = dec.seen_buffer(self.model.cfg.vocab_size)
        vocab = self.model.cfg.vocab_size
        seen[0, torch.tensor(r.prompt, device=self.device).clamp(0, vocab - 1)] = True

        def fed() -> list[int] | None:  # the last sampled id is never fed
            if dec.cache is not got.cache or dec.reencodes:
                return None
            return r.prompt + r.new[:-1]

        pc.track(fed)
        return got.logits, seen

    def _run(self) -> Iterator[list[int | None]]:
        b = len(self.rows)
        seed = self.params.seed
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed if seed is not None else random.getrandbits(63))
        cap = max(len(r.prompt) for r in self.rows) + int(self.params.max_new_tokens)
        if self.prompt_cache is not None:
            logits, seen = self._prefill_cached(self.prompt_cache)
        else:
            logits, seen = self._prefill([r.prompt for r in self.rows], cap, None)
        self.t_prefill_done = time.perf_counter()
        for r in self.rows:
            r.t_prefilled = self.t_prefill_done
        ids = self._sample(logits, seen, gen)
        eager_ids = True  # ids drawn outside the graph must be marked in `seen` by us
        while True:
            host = ids.tolist()  # the one host sync per step: the caller needs the ids
            now = time.perf_counter()
            out: list[int | None] = []
            limit = max(1, int(self.params.max_new_tokens))
            for i, r in enumerate(self.rows):
                if r.finish is not None:
                    out.append(None)
                    continue
                tok = host[i]
                r.new.append(tok)
                route = self._pending_routes[i] if self._pending_routes else None
                if route is not None:
                    r.routes.append(route)
                if self._pending is not None:
                    rec = self._pending[i]
                    r.logprobs.append(rec if route is None else replace(rec, routing=route))
                r.t_first = r.t_first or now
                r.t_last = now
                out.append(tok)
                if self.eos_id is not None and tok == self.eos_id:
                    r.finish = "eos"
                elif len(r.new) >= limit:
                    r.finish = "length"
            if eager_ids:
                seen.scatter_(1, ids[:, None], True)  # the graph marks its own draws
            yield out
            if self.done:
                return
            if self.cancel_event.is_set():
                for i in range(b):
                    self.finish(i, "cancelled")
                return
            if self.dec.full():
                logits, seen = self._reencode(seen)
                ids = self._sample(logits, seen, gen)
                eager_ids = True
                continue
            nxt = None
            if self.dec.graph is not None:
                nxt = self.dec.advance(ids, self.params, gen)
            eager_ids = nxt is None
            if nxt is None:
                nxt = self._sample(self.dec.step(ids), seen, gen)
            ids = nxt

    def _reencode(self, seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Context reached max_length (or the cache its capacity): re-encode from position 0."""
        ctxs = [self._context(r) for r in self.rows]
        if max(len(c) for c in ctxs) >= self.max_length:
            keep = max(1, self.max_length - max(1, self.max_length // 4))
            ctxs = [c[-keep:] for c in ctxs]
        remaining = max(1, max(int(self.params.max_new_tokens) - len(r.new) for r in self.rows) + 1)
        self.dec.reencodes += 1
        old = seen.clone()
        return self._prefill(ctxs, max(len(c) for c in ctxs) + remaining, old)
