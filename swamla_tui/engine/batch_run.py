"""Batch runs: one `BatchResult` per prompt as its row finishes (`index`: input order).

By default the prompts go through continuous batching (`engine.continuous`): `batch_size`
rows, each taking the next queued prompt as soon as its own finishes. `continuous=False`
(or a model decoding with SWA "window" ring caches) runs them statically instead: chunks
of `batch_size` prompts, each chunk until its longest row ends. Both give every prompt
the tokens of a run of its own (greedy; and seeded sampling with continuous batching,
where each row draws from its own generator). A prompt that cannot run (its tokenizer fails, or it has ids outside the model's
vocabulary) gives a result with `finish_reason="error"` and the reason; the other
prompts run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from ..base.errors import SwamlaError
from ..base.params import SamplingParams
from ..base.stops import StopText
from ..base.timings import ReplyTimings
from .continuous import ContinuousBatch, Queued
from .core import Engine
from .decode_loop import RowState
from .text import IncrementalDecoder, TextCodec

FinishReason = Literal["length", "stop", "eos", "cancelled", "error"]


@dataclass
class BatchResult:
    index: int
    prompt: str
    completion: str
    new_tokens: int
    seconds: float
    finish_reason: str  # a FinishReason
    truncated: bool = False
    error: str = ""  # why the row failed (finish_reason "error")
    timings: ReplyTimings | None = None  # prompt tokens, prefill, first token, decode rate


def _encode_all(engine: Engine, codec: TextCodec, chunk: list[str]) -> list[list[int] | str]:
    """Ids per prompt, or the one-line reason that prompt cannot run."""
    out: list[list[int] | str] = []
    for text in chunk:
        try:
            ids = codec.encode(text)
        except SwamlaError as e:
            out.append(str(e))
            continue
        out.append(engine.bad_ids(ids) or ids)
    return out


def run_batch(
    engine: Engine,
    codec: TextCodec,
    texts: Sequence[str],
    params: SamplingParams,
    *,
    batch_size: int,
    stop: Sequence[str] = (),
    cancel: threading.Event | None = None,
    continuous: bool = True,
    limits: Sequence[int] | None = None,
) -> Iterator[BatchResult]:
    """Run prompts in batches; yield each result as its row finishes.

    Continuous: `params` is read when each prompt starts. Static: when each chunk starts
    (and live within it). Either way a change applies to prompts not yet started.
    `limits` (one per prompt) overrides `max_new_tokens` per prompt (the benchmark's
    mixed-length workload).
    """
    cancel = cancel or threading.Event()
    stops = tuple(s for s in stop if s)
    if limits is not None and len(limits) != len(texts):
        raise ValueError("one limit per prompt")
    if continuous and not engine.model.swa_window:
        yield from _run_continuous(engine, codec, texts, params, batch_size, stops, cancel, limits)
        return
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        if cancel.is_set():
            for j, t in enumerate(chunk):
                yield BatchResult(start + j, t, "", 0, 0.0, "cancelled")
            continue
        encoded = _encode_all(engine, codec, chunk)
        rows = [j for j, e in enumerate(encoded) if isinstance(e, list)]
        for j, e in enumerate(encoded):
            if isinstance(e, str):
                yield BatchResult(start + j, chunk[j], "", 0, 0.0, "error", error=e)
        if not rows:
            continue
        caps = None if limits is None else [int(limits[start + j]) for j in rows]
        p = params if caps is None else params.copy(max_new_tokens=max(caps))
        gen = engine.generation([encoded[j] for j in rows], p, cancel)  # type: ignore[misc]
        texts_by_row = [StopText(stops) if stops else None for _ in rows]
        decoders = [IncrementalDecoder(codec) if stops else None for _ in rows]
        t0 = time.perf_counter()
        reported = [False] * len(rows)
        for step in gen:
            for k, tok in enumerate(step):
                r, st, dec = gen.rows[k], texts_by_row[k], decoders[k]
                if caps is not None and len(r.new) >= caps[k]:
                    gen.finish(k, "length")
                if tok is not None and tok != engine.eos_id and st is not None and dec is not None:
                    st.push(dec.push(tok))
                    if st.stopped:
                        gen.finish(k, "stop")  # no-op when the row already ended
                if r.finish is not None and not reported[k]:
                    reported[k] = True
                    yield _result(engine, codec, start + rows[k], chunk[rows[k]], r, t0, st, dec)
        for k, r in enumerate(gen.rows):
            if not reported[k]:
                yield _result(
                    engine,
                    codec,
                    start + rows[k],
                    chunk[rows[k]],
                    r,
                    t0,
                    texts_by_row[k],
                    decoders[k],
                )


def _run_continuous(
    engine: Engine,
    codec: TextCodec,
    texts: Sequence[str],
    params: SamplingParams,
    slots: int,
    stops: tuple[str, ...],
    cancel: threading.Event,
    limits: Sequence[int] | None,
) -> Iterator[BatchResult]:
    encoded = _encode_all(engine, codec, list(texts))
    queue = [
        Queued(i, e, None if limits is None else int(limits[i])) for i, e in enumerate(encoded)
    ]
    batch = ContinuousBatch(
        engine.model,
        params,
        slots=max(1, min(slots, len(texts))),
        max_length=engine.max_length,
        eos_id=engine.eos_id,
        cancel=cancel,
        stop=stops,
        codec=codec,
    )
    for f in batch.run(queue):
        if f.row is None:
            reason = "error" if f.error else "cancelled"
            yield BatchResult(f.index, texts[f.index], "", 0, 0.0, reason, error=f.error)
        else:
            yield _result(engine, codec, f.index, texts[f.index], f.row, f.seconds, f.stop,
                          f.decoder, elapsed=True)  # fmt: skip


def _result(
    engine: Engine,
    codec: TextCodec,
    index: int,
    prompt: str,
    r: RowState,
    t0: float,
    st: StopText | None,
    dec: IncrementalDecoder | None,
    *,
    elapsed: bool = False,
) -> BatchResult:
    """`t0`: when the row started (or, with `elapsed`, the seconds it took)."""
    if st is not None and dec is not None:
        if not st.stopped:
            st.finish(dec.flush())
        text = st.text
    else:
        new = [t for t in r.new if t != engine.eos_id]
        text = codec.decode(new) if new else ""
    return BatchResult(
        index=index,
        prompt=prompt,
        completion=text,
        new_tokens=len(r.new),
        seconds=t0 if elapsed else time.perf_counter() - t0,
        finish_reason=r.finish or "cancelled",
        truncated=r.truncated,
        timings=r.timings(),
    )
