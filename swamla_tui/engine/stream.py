"""Streaming text for one prompt: incremental detokenising, stop strings, timing, cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..params import SamplingParams
from ..tokenizer import IncrementalDecoder
from .generate import Generation


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing chars of `text` could be the start of a stop string."""
    hold = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                hold = max(hold, n)
                break
    return hold


class TokenStream:
    """Iterator of text pieces for one reply. See docs/ARCHITECTURE.md for the contract."""

    def __init__(
        self,
        lm: Any,
        prompt_ids: list[int],
        params: SamplingParams,
        stop: Sequence[str] = (),
    ) -> None:
        self.lm = lm
        self.params = params
        self.stop = tuple(s for s in stop if s)
        self._cancel = threading.Event()
        self.prompt_tokens = len(prompt_ids)
        self._gen = Generation(
            lm.model,
            [prompt_ids],
            params,
            max_length=lm.max_length,
            eos_id=lm.eos_id,
            cancel=self._cancel,
            use_graph=lm.use_cuda_graph,
            cache_pool=lm.cache_pool,
        )
        self.truncated = self._gen.rows[0].truncated
        self.text = ""
        self._pending = ""
        self.finish_reason: str | None = None
        self.t_start = time.perf_counter()
        self.time_to_first_token: float | None = None

    # -- live figures -------------------------------------------------------
    @property
    def new_tokens(self) -> int:
        return len(self._gen.rows[0].new)

    @property
    def context_tokens(self) -> int:
        return min(self.prompt_tokens, self.lm.max_length) + self.new_tokens

    @property
    def tokens_per_second(self) -> float:
        r = self._gen.rows[0]
        if r.t_first is None or r.t_last is None or len(r.new) < 2:
            return 0.0
        dt = r.t_last - r.t_first
        return (len(r.new) - 1) / dt if dt > 0 else 0.0

    def cancel(self) -> None:
        """Thread-safe: the stream ends before producing another token."""
        self._cancel.set()

    # -- iteration ------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        dec = IncrementalDecoder(self.lm.tokenizer)
        eos = self.lm.eos_id
        for step in self._gen:
            tok = step[0]
            if tok is None:
                break
            if self.time_to_first_token is None:
                self.time_to_first_token = time.perf_counter() - self.t_start
            if tok == eos:
                break
            self._pending += dec.push(tok)
            out = self._release()
            if out:
                yield out
            if self.finish_reason == "stop":
                self._gen.finish(0, "stop")
                break
        if self.finish_reason != "stop":
            self._pending += dec.flush()
            out = self._release(final=True)
            if out:
                yield out
        if self.finish_reason is None:
            self.finish_reason = self._gen.rows[0].finish or "length"

    def _release(self, final: bool = False) -> str:
        """Emit what is certainly not part of a stop string; detect stops."""
        for s in self.stop:
            idx = self._pending.find(s)
            if idx >= 0:
                out = self._pending[:idx]
                self._pending = ""
                self.text += out
                self.finish_reason = "stop"
                return out
        hold = 0 if final else _held_back(self._pending, self.stop)
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(out) :]
        self.text += out
        return out
