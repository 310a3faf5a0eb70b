"""Streaming text for one prompt: incremental detokenising, stop strings, timing, cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

from ..base.experts import TokenRouting
from ..base.params import SamplingParams
from ..base.stops import StopText, held_back
from ..base.timings import ReplyTimings
from .core import Engine
from .logprobs import TokenLogprobs
from .prompt_cache import PromptCache
from .text import IncrementalDecoder, TextCodec

_held_back = held_back  # the name tests and older callers use


class TokenStream:
    """Iterator of text pieces for one reply. See docs/ARCHITECTURE.md for the contract."""

    def __init__(
        self,
        engine: Engine,
        codec: TextCodec,
        prompt_ids: list[int],
        params: SamplingParams,
        stop: Sequence[str] = (),
        *,
        logprobs: int | None = None,
        prompt_cache: PromptCache | None = None,
        load_s: float | None = None,
        routing: bool | None = None,
    ) -> None:
        self.engine = engine
        self.codec = codec
        self.params = params
        self.stop = tuple(s for s in stop if s)
        self._cancel = threading.Event()
        self.prompt_tokens = len(prompt_ids)
        # the inspector's MoE view rides on its token records: routing defaults to logprobs
        routing = bool(logprobs) if routing is None else routing
        self._gen = engine.generation(
            [prompt_ids],
            params,
            self._cancel,
            logprobs=logprobs,
            prompt_cache=prompt_cache,
            routing=routing,
        )
        self.load_s = load_s
        self.truncated = self._gen.rows[0].truncated
        self._stops = StopText(self.stop)
        self.finish_reason: str | None = None
        self.t_start = time.perf_counter()
        self.time_to_first_token: float | None = None

    # -- live figures -------------------------------------------------------
    @property
    def text(self) -> str:
        return self._stops.text

    @property
    def new_tokens(self) -> int:
        return len(self._gen.rows[0].new)

    @property
    def context_tokens(self) -> int:
        return min(self.prompt_tokens, self.engine.max_length) + self.new_tokens

    @property
    def tokens_per_second(self) -> float:
        r = self._gen.rows[0]
        if r.t_first is None or r.t_last is None or len(r.new) < 2:
            return 0.0
        dt = r.t_last - r.t_first
        return (len(r.new) - 1) / dt if dt > 0 else 0.0

    @property
    def timings(self) -> ReplyTimings:
        """This reply's figures so far (final once the stream has ended); the time to first
        token is the consumer's (from the call), the rest the engine's."""
        t = self._gen.rows[0].timings(self._gen.reused)
        return replace(t, ttft_s=self.time_to_first_token, load_s=self.load_s)

    @property
    def token_logprobs(self) -> list[TokenLogprobs]:
        """One `TokenLogprobs` per generated id (the EOS included), when asked for with
        ``logprobs=k``; empty otherwise. Read it from the consuming thread."""
        return self._gen.rows[0].logprobs

    @property
    def token_routes(self) -> list[TokenRouting]:
        """One `TokenRouting` per generated id when routing was recorded (an MoE or Engram
        model streamed with ``logprobs=k``); empty otherwise."""
        return self._gen.rows[0].routes

    @property
    def token_ids(self) -> list[int]:
        """The generated ids so far (parallel to `token_logprobs`)."""
        return self._gen.rows[0].new

    def cancel(self) -> None:
        """Thread-safe: the stream ends before producing another token."""
        self._cancel.set()

    # -- iteration ------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        dec = IncrementalDecoder(self.codec)
        eos = self.engine.eos_id
        for step in self._gen:
            tok = step[0]
            if tok is None:
                break
            if self.time_to_first_token is None:
                self.time_to_first_token = time.perf_counter() - self.t_start
            if tok == eos:
                break
            out = self._stops.push(dec.push(tok))
            if out:
                yield out
            if self._stops.stopped:
                self.finish_reason = "stop"
                self._gen.finish(0, "stop")
                break
        if not self._stops.stopped:
            out = self._stops.finish(dec.flush())
            if out:
                yield out
            if self._stops.stopped:
                self.finish_reason = "stop"
        if self.finish_reason is None:
            self.finish_reason = self._gen.rows[0].finish or "length"
