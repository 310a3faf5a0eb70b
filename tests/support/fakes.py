"""Fakes of the model contract (`swamla_tui.protocols`) for UI tests, torch-free.

`FakeLM` / `FakeStream` follow the same contract as `LoadedModel` / `TokenStream`
(tests/unit/test_stream_contract.py runs one test against both): pieces never contain a
stop string (the stream ends before it, ``finish_reason == "stop"``), `params` is the
live object given, `cancel()` ends the stream within one piece.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from swamla_tui.base.params import SamplingParams, StreamOptions
from swamla_tui.base.stops import cut_at_stop, held_back
from swamla_tui.base.timings import ReplyTimings
from swamla_tui.chat.template import ChatFormat
from swamla_tui.chat.token_tree import Step
from swamla_tui.protocols import BatchRecord

if TYPE_CHECKING:
    from typing_extensions import Unpack

ALT_PIECES = (" there", " friend", " moon", " sun")
"""Extra tokens of a `FakeLM` vocabulary: the alternatives its records offer."""
VOCAB_BASE = 1000  # FakeLM token ids: VOCAB_BASE + index into `FakeLM.vocab`
FAKE_PROBS = (0.95, 0.6, 0.3, 0.05)  # sampling probability of the token at step t % 4


FakeRecord = Step
"""The engine's own token record (`base.tokens.TokenLogprobs`): the fakes write the same type."""


def fake_record(
    token: int,
    p: float,
    *,
    top: list[tuple[int, float]] | None = None,
    raw_top: list[tuple[int, float]] | None = None,
    entropy: float = 1.0,
) -> FakeRecord:
    """A record from probabilities (not logs); `top` defaults to the token alone."""
    top = top if top is not None else [(token, p)]
    raw_top = raw_top if raw_top is not None else top
    raw_p = dict(raw_top).get(token, p)
    return FakeRecord(
        token,
        math.log(p),
        math.log(raw_p),
        entropy,
        tuple((i, math.log(q)) for i, q in top),
        tuple((i, math.log(q)) for i, q in raw_top),
    )


class FakeStream:
    def __init__(
        self,
        lm: FakeLM,
        prompt: str,
        params: SamplingParams,
        stop: tuple[str, ...],
        *,
        logprobs: int | None = None,
        prefix_ids: Sequence[int] = (),
    ) -> None:
        self.lm = lm
        self.prompt = prompt
        self.params = params
        self.stop = tuple(s for s in stop if s)
        self.text = ""
        self.prompt_tokens = len(lm.encode(prompt))
        self.new_tokens = 0
        self.tokens_per_second = 0.0
        self.finish_reason: str | None = None
        self.truncated = False
        self.seen: list[dict[str, object]] = []
        self._cancel = threading.Event()
        self._pending = ""
        self.logprobs = logprobs
        self.prefix_ids = list(prefix_ids)
        self.token_ids: list[int] = []
        self.token_logprobs: list[FakeRecord] = []

    @property
    def context_tokens(self) -> int:
        return self.prompt_tokens + self.new_tokens

    @property
    def timings(self) -> ReplyTimings:
        """Made-up durations from the scripted rate; the counts are this stream's own."""
        rate = self.lm.tokens_per_second
        n = self.new_tokens
        return ReplyTimings(
            prompt_tokens=self.prompt_tokens,
            cached_tokens=self.lm.cached_tokens,
            prefill_s=0.01,
            ttft_s=0.01 if n else None,
            generated_tokens=n,
            decode_s=(n - 1) / rate if n > 1 else 0.0,
            load_s=0.5,
        )

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _release(self, final: bool) -> str:
        """What is certainly not part of a stop string; sets "stop" when one appears."""
        out, hit = cut_at_stop(self._pending, self.stop)
        if hit:
            self._pending = ""
            self.finish_reason = "stop"
            self.text += out
            return out
        keep = 0 if final else held_back(self._pending, self.stop)
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(out) :]
        self.text += out
        return out

    def _next_piece(self, index: int) -> str | None:
        """The piece for token `index`, or None with `finish_reason` set."""
        lm = self.lm
        if self._cancel.is_set():
            self.finish_reason = "cancelled"
            return None
        if index >= len(lm.pieces) and not lm.endless:
            self.finish_reason = "eos"
            return None
        if lm.hold:
            while not lm.gate.acquire(timeout=0.005):
                if self._cancel.is_set():
                    self.finish_reason = "cancelled"
                    return None
        elif lm.delay:
            time.sleep(lm.delay)
        if self.new_tokens >= self.params.max_new_tokens:
            self.finish_reason = "length"
            return None
        if lm.error_after is not None and index >= lm.error_after:
            raise lm.error
        return lm.pieces[index % len(lm.pieces)]

    def _record(self, index: int, piece: str) -> None:
        """The token's id, and with `logprobs` a made-up record: the script's piece with a
        probability from `FAKE_PROBS`, then the `ALT_PIECES` sharing the rest."""
        lm = self.lm
        tok = lm.token_id(piece)
        self.token_ids.append(tok)
        if not self.logprobs:
            return
        p = FAKE_PROBS[index % len(FAKE_PROBS)]
        others = [lm.token_id(a) for a in ALT_PIECES if lm.token_id(a) != tok]
        shares = [(1 - p) * w for w in (0.5, 0.3, 0.15, 0.05)]
        top = sorted([(tok, p), *zip(others, shares, strict=False)], key=lambda x: -x[1])[
            : self.logprobs
        ]
        raw = [(i, q * 0.9) for i, q in top]
        self.token_logprobs.append(fake_record(tok, p, top=top, raw_top=raw, entropy=1 - p))

    def __iter__(self) -> Iterator[str]:
        index = len(self.prefix_ids)  # a continuation picks the script up there
        while self.finish_reason is None:
            piece = self._next_piece(index)
            if piece is None:
                break
            self._record(index, piece)
            index += 1
            self.seen.append(self.params.as_dict())
            self.new_tokens += 1
            self.tokens_per_second = self.lm.tokens_per_second
            self._pending += piece
            out = self._release(final=False)
            if out:
                yield out
        if self.finish_reason != "stop":
            out = self._release(final=True)
            if out:
                yield out


class FakeLM:
    """Replies with `pieces`, one per token. `hold=True`: each token waits for `release()`."""

    def __init__(
        self,
        pieces: list[str] | None = None,
        *,
        max_length: int = 512,
        hold: bool = False,
        delay: float = 0.0,
        endless: bool = False,
        error_after: int | None = None,
        error: BaseException | None = None,
        copy_params: bool = False,
    ) -> None:
        self.pieces = pieces if pieces is not None else [" Hello", ",", " world", "!"]
        self.max_length = max_length
        self.hold = hold
        self.gate = threading.Semaphore(0)
        self.delay = delay
        self.endless = endless
        self.error_after = error_after
        self.error = error or RuntimeError("CUDA out of memory")
        self.copy_params = copy_params
        self.tokens_per_second = 42.0
        self.source = "fake.pt"
        self.notices: list[str] = []
        self.streams: list[FakeStream] = []
        self.prompts: list[str] = []
        self.cache_keys: list[str | None] = []  # each stream's `cache_key`
        self.cached_tokens = 0  # what the fake streams report as reused
        self.vocab = list(dict.fromkeys([*self.pieces, *ALT_PIECES]))
        # None: the plain format; a test sets one as `FormattedModel` carries it
        self.chat_format: ChatFormat | None = None

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self.gate.release()

    def summary(self) -> str:
        return "1,234 params · 2 SWA + 1 MLA · float32 · cpu"

    def card(self) -> dict[str, str]:
        return {"source": self.source, "params": "1,234", "layers": "2 SWA + 1 MLA"}

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 512 for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.vocab[i - VOCAB_BASE] if i >= VOCAB_BASE else chr(i) for i in ids)

    def token_id(self, piece: str) -> int:
        """A script piece's id (every piece is one token; `pieces` may change later)."""
        if piece not in self.vocab:
            self.vocab.append(piece)
        return VOCAB_BASE + self.vocab.index(piece)

    def default_batch_size(self) -> int:
        return 4

    def stream(
        self,
        text: str,
        params: SamplingParams | None = None,
        **options: Unpack[StreamOptions],
    ) -> FakeStream:
        stop = options.pop("stop", ())
        logprobs = options.pop("logprobs", None)
        prefix_ids = options.pop("prefix_ids", ())
        self.cache_keys.append(options.pop("cache_key", None))
        params = params if params is not None else SamplingParams()
        if self.copy_params or options:  # what is left are sampling overrides
            params = params.copy(**options)
        self.prompts.append(text)
        stream = FakeStream(
            self, text, params, tuple(stop), logprobs=logprobs, prefix_ids=prefix_ids
        )
        self.streams.append(stream)
        return stream


def loader_for(lm: Any) -> Callable[[Callable[[str], None]], Any]:
    """A loader (as the CLI builds) that returns `lm` after one progress line."""

    def loader(progress: Callable[[str], None]) -> Any:
        progress("Loading fake model…")
        return lm

    return loader


Outcome = BatchRecord
"""A batch result as the fakes yield it: the real plain record, not a copy of it."""
