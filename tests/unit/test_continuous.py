"""Continuous batching (engine.continuous): every prompt gets the tokens of a run of its
own while rows are handed from finished prompts to queued ones, on the v1 fixture, the v2
fixture (DeltaNet + MoE) and synthetic v2 models (Engram; G3 flash SWA)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import pytest

import swamla_tui
from swamla_tui.base.params import BatchOptions, SamplingParams
from swamla_tui.batch.job import ChunkStarted, PromptFinished, run_chunks
from swamla_tui.engine.batch_run import run_batch
from swamla_tui.engine.continuous import ContinuousBatch, Queued
from swamla_tui.engine.core import Engine
from swamla_tui.protocols import BatchOutcome
from tests.support.continuous import (
    GREEDY,
    SEEDED,
    alone,
    continuous,
    engine_of,
    mixed_prompts,
    synthetic_v2,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack
from tests.support.batch import WrappedLM
from tests.support.helpers import FIXTURE_CKPT, V2_CKPT

# mixed prompt lengths and token budgets: rows finish at different steps and get reused
LENGTHS = [5, 23, 1, 40, 9, 14, 2, 31]
LIMITS = [9, 2, 12, 5, 1, 7, 3, 6]


@cache
def _engine(name: str) -> Engine:
    if name == "v1":
        return swamla_tui.load(FIXTURE_CKPT, tokenizer=False).engine
    if name == "v2":
        return swamla_tui.load(V2_CKPT, tokenizer=False).engine
    model = synthetic_v2(name)
    return engine_of(model, model.cfg.block_size)


MODELS = ["v1", "v2", "engram", "flash_swa_g3"]


@pytest.mark.parametrize("params", [GREEDY, SEEDED], ids=["greedy", "seeded"])
@pytest.mark.parametrize("name", MODELS)
def test_every_prompt_gets_its_own_run(name, params):
    engine = _engine(name)
    prompts = mixed_prompts(engine.vocab_size, LENGTHS)
    got, batch, order = continuous(engine, prompts, params, LIMITS, slots=3)
    want = {
        i: alone(engine, p, params, n)
        for i, (p, n) in enumerate(zip(prompts, LIMITS, strict=False))
    }
    assert got == want
    assert [len(got[i]) for i in range(len(prompts))] == LIMITS
    assert batch.prefills == len(prompts)  # each prompt admitted once, no re-encode here
    assert order != sorted(order)  # short budgets finished before earlier long ones


@pytest.mark.parametrize("name", ["v1", "engram"])
def test_one_slot_and_more_slots_than_prompts(name):
    engine = _engine(name)
    prompts = mixed_prompts(engine.vocab_size, LENGTHS[:4], seed=4)
    want = {
        i: alone(engine, p, SEEDED, n)
        for i, (p, n) in enumerate(zip(prompts, LIMITS, strict=False))
    }
    for slots in (1, 8):
        got, _, order = continuous(engine, prompts, SEEDED, LIMITS[:4], slots=slots)
        assert got == want
        if slots == 1:
            assert order == [0, 1, 2, 3]


@pytest.mark.parametrize("name", ["v1", "engram"])
def test_long_generations_compact_grow_and_reencode_as_alone(name):
    """Budgets past the context limit (re-encode, formats v1 §6) and a cache sized tight so
    the shared columns are compacted and the cache grows mid-run."""
    cap = 40  # a short context limit keeps the test fast
    engine = engine_of(_engine(name).model, cap)
    prompts = mixed_prompts(engine.vocab_size, [3, cap - 2, 11, 30, 6], seed=5)
    limits = [cap + 12, 5, cap // 2, 9, 25]
    got, batch, _ = continuous(engine, prompts, GREEDY, limits, slots=2)
    want = {
        i: alone(engine, p, GREEDY, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True))
    }
    assert got == want
    assert batch.prefills > len(prompts)  # re-encodes happened
    assert batch.compactions >= 1
    assert batch.cache is not None and batch.cache.lin_size <= 2 * (cap + 1) * 2


@pytest.mark.parametrize("name", ["v1", "engram"])
def test_columns_beyond_the_longest_row_are_reclaimed_as_alone(name, monkeypatch):
    """A long row finishes while short ones go on: its dead columns are compacted away
    before the cache is full (every later step attends over fewer), outputs unchanged."""
    engine = _engine(name)
    prompts = mixed_prompts(engine.vocab_size, [40, 3, 5, 2], seed=7)
    limits = [2, 30, 28, 25]
    want = {
        i: alone(engine, p, SEEDED, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True))
    }
    column = ContinuousBatch._column
    columns: list[int] = []  # the attended width of every decode step

    def recorded(self: ContinuousBatch, floor: int = 0) -> int:
        columns.append(column(self, floor) + 1)
        return columns[-1] - 1

    monkeypatch.setattr(ContinuousBatch, "_column", recorded)
    widths = {}
    for slack in (10**9, 4):  # only when full (the rule before), then dead columns too
        monkeypatch.setattr(ContinuousBatch, "slack", slack)
        columns.clear()
        got, _, _ = continuous(engine, prompts, SEEDED, limits, slots=3)
        assert got == want
        widths[slack] = sum(columns)
    assert widths[4] < 0.8 * widths[10**9]


@pytest.mark.parametrize("name", ["v1", "v2", "engram"])
def test_a_dry_queue_steps_over_the_occupied_rows_only_as_alone(name, monkeypatch):
    """Once nothing is queued, finished rows are not refilled: the last rows move down
    (one of them mid-way through a chunked prompt, with its recurrent state) and decode
    steps shrink to the occupied rows, outputs unchanged."""
    engine = _engine(name)
    monkeypatch.setattr(ContinuousBatch, "chunk", 8)  # the 30-token prompt takes 4 chunks
    prompts = mixed_prompts(engine.vocab_size, [3, 4, 6, 30], seed=8)
    limits = [1, 3, 9, 12]
    want = {
        i: alone(engine, p, SEEDED, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True))
    }
    model_cls = type(engine.model)
    forward = model_cls.forward_cached
    rows: list[int] = []  # rows of every decode step

    def recorded(self: Any, idx: Any, *a: Any, **kw: Any) -> Any:
        if idx.shape[1] == 1:
            rows.append(idx.shape[0])
        return forward(self, idx, *a, **kw)

    monkeypatch.setattr(model_cls, "forward_cached", recorded)
    got, batch, _ = continuous(engine, prompts, SEEDED, limits, slots=4)
    assert got == want
    assert batch.moves >= 2
    assert rows == sorted(rows, reverse=True) and rows[0] <= 3 and rows[-1] == 1


def test_prompts_longer_than_the_context_are_truncated_as_alone():
    engine = _engine("engram")
    prompts = mixed_prompts(engine.vocab_size, [engine.max_length + 7, 4], seed=6)
    got, _, _ = continuous(engine, prompts, SEEDED, [6, 6], slots=2)
    assert got == {i: alone(engine, p, SEEDED, 6) for i, p in enumerate(prompts)}


def test_stop_strings_and_results_through_run_batch(fixture_lm):
    engine, codec = fixture_lm.engine, fixture_lm._need_codec()
    texts = ["Hello there", "The quick brown fox", "Once upon a time", "é ü"]
    params = GREEDY.copy(max_new_tokens=12)
    plain = {r.index: r.completion for r in run_batch(engine, codec, texts, params, batch_size=2)}
    stop = next(c[4:6] for c in plain.values() if len(c) > 8)  # a piece some reply contains
    got = list(run_batch(engine, codec, texts, params, batch_size=2, stop=[stop]))
    assert sorted(r.index for r in got) == list(range(len(texts)))
    for r in got:
        (want,) = run_batch(engine, codec, [texts[r.index]], params, batch_size=1, stop=[stop],
                            continuous=False)  # fmt: skip
        assert (r.completion, r.finish_reason) == (want.completion, want.finish_reason)
        if stop in plain[r.index]:
            assert r.finish_reason == "stop" and stop not in r.completion
    assert any(r.finish_reason == "stop" for r in got)


def test_bad_prompts_fail_alone_and_cancel_ends_the_run(fixture_lm):
    engine, codec = fixture_lm.engine, fixture_lm._need_codec()
    batch = ContinuousBatch(engine.model, GREEDY.copy(max_new_tokens=50), slots=2,
                            max_length=engine.max_length, eos_id=None)  # fmt: skip
    queue = [Queued(0, [5, 6]), Queued(1, "no such token"), Queued(2, [7], 2)]
    queue += [Queued(i, [i, i + 1]) for i in range(3, 9)]
    results = []
    for f in batch.run(queue):
        results.append(f)
        if f.index == 2:
            batch.cancel.set()
    by = {f.index: f for f in results}
    assert sorted(by) == list(range(9))
    assert by[1].row is None and by[1].error == "no such token"
    assert by[2].row is not None and by[2].row.finish == "length"
    assert by[0].row is not None and by[0].row.finish == "cancelled"
    assert 0 < len(by[0].row.new) < 50
    queued = [i for i in range(3, 9) if by[i].row is None]
    assert queued and all(by[i].error == "" for i in queued)
    del codec


class _Recorder(WrappedLM):
    """A continuously batching model that records how the run was handed to it."""

    continuous_batching = True
    max_length = 128

    def __init__(self, lm: Any) -> None:
        super().__init__(lm)
        self.calls: list[tuple[int, int | None]] = []
        self.temps: list[float] = []

    def generate_batch(
        self,
        texts: Sequence[str],
        params: SamplingParams | None = None,
        **options: Unpack[BatchOptions],
    ) -> Iterator[BatchOutcome]:
        batch_size, cancel = options.get("batch_size"), options.get("cancel")
        self.calls.append((len(texts), batch_size))
        yield from self.lm.generate_batch(texts, params, batch_size=batch_size, cancel=cancel)


def test_run_chunks_hands_the_whole_run_over_and_mirrors_admissions(fixture_lm):
    assert fixture_lm.continuous_batching
    prompts = [f"prompt number {i}" for i in range(7)]
    lm = _Recorder(fixture_lm)
    live = {"n": 3}
    events = []
    for event in run_chunks(
        lm,
        prompts,
        [6, 0, 1, 2, 3, 4, 5],
        params=lambda: GREEDY.copy(max_new_tokens=live["n"]),
        batch_size=3,
        cancel=threading.Event(),
    ):
        events.append(event)
        if isinstance(event, PromptFinished):
            live["n"] += 1  # read when the next prompt starts
    assert lm.calls == [(7, 3)]
    assert events[0] == ChunkStarted((6, 0, 1))
    # each later event names the rows in flight, the one just started last
    started = [events[0].indices[0], events[0].indices[1]]
    started += [e.indices[-1] for e in events if isinstance(e, ChunkStarted)]
    assert started == [6, 0, 1, 2, 3, 4, 5]
    running: set[int] = set()
    for e in events:
        if isinstance(e, ChunkStarted):
            assert set(e.indices) >= running and len(e.indices) <= 3
            running = set(e.indices)
        else:
            running.discard(e.index)
    done = {e.index: e.outcome for e in events if isinstance(e, PromptFinished)}
    assert sorted(done) == list(range(7))
    # the first three started with 3 tokens; later ones with the settings of their start
    assert [done[i].new_tokens for i in (6, 0, 1)] == [3, 3, 3]
    later = [done[i].new_tokens for i in (2, 3, 4, 5)]
    assert later == sorted(later) and later[0] > 3 and later[-1] <= live["n"]
    seen: set[int] = set()
    for e in events:  # every prompt starts before it finishes
        if isinstance(e, ChunkStarted):
            seen.update(e.indices)
        else:
            assert e.index in seen


def test_run_chunks_cancel_leaves_never_started_prompts_without_an_event(fixture_lm):
    lm, cancel = _Recorder(fixture_lm), threading.Event()
    events = []
    for event in run_chunks(
        lm, [f"p{i}" for i in range(6)], params=GREEDY.copy(max_new_tokens=4),
        batch_size=2, cancel=cancel,
    ):  # fmt: skip
        events.append(event)
        if isinstance(event, PromptFinished):
            cancel.set()
    started = {i for e in events if isinstance(e, ChunkStarted) for i in e.indices}
    finished = {e.index for e in events if isinstance(e, PromptFinished)}
    assert started == {0, 1} and finished == {0, 1}


def test_static_batching_stays_reachable():
    from swamla_tui.engine.options import EngineOptions

    assert EngineOptions().continuous_batching
    off = EngineOptions.from_env(env={"SWAMLA_CONTINUOUS_BATCHING": "0"})
    assert not off.continuous_batching
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, engine=off)
    assert not lm.continuous_batching
    window = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, swa_attention="window")
    assert not window.continuous_batching  # ring caches: static chunks


@pytest.mark.parametrize("name", MODELS)
def test_grouped_and_chunked_refills_give_every_prompt_its_own_run(name):
    """Refills wait for each other and go through one prefill (`group_min` rows), and
    prompts longer than `chunk` are prefilled a chunk at a time between decode steps."""
    engine = _engine(name)
    prompts = mixed_prompts(engine.vocab_size, LENGTHS + [33, 3, 26], seed=7)
    limits = LIMITS + [4, 8, 2]
    want = {
        i: alone(engine, p, SEEDED, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True))
    }
    batch = ContinuousBatch(engine.model, SEEDED, slots=4, max_length=engine.max_length,
                            eos_id=engine.eos_id)  # fmt: skip
    batch.group_min, batch.chunk, batch.group_tokens = 2, 12, 60
    batch.pack = False  # prefills of their own (riding along: the test after next)
    got = {f.index: f.row.new for f in batch.run(
        Queued(i, p, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True)))
        if f.row is not None}  # fmt: skip
    assert got == want
    assert batch.prefills == len(prompts)
    long = sum(-(-n // batch.chunk) for n in LENGTHS + [33, 3, 26] if n > batch.chunk)
    # fewer forwards than one per short prompt plus one per chunk: short ones were grouped
    assert batch.prefill_calls < long + sum(1 for n in LENGTHS + [33, 3, 26] if n <= batch.chunk)


@pytest.mark.parametrize("name", ["v1", "flash_swa_g3"])
def test_prefills_ride_along_decode_steps_as_alone(name):
    """Packable models: waiting prompts (short ones whole, long ones a chunk at a time)
    are prefilled inside the decode steps of the other rows, not in forwards of their own."""
    engine = _engine(name)
    lengths = LENGTHS + [33, 3, 26]
    prompts = mixed_prompts(engine.vocab_size, lengths, seed=7)
    limits = LIMITS + [4, 8, 2]
    want = {
        i: alone(engine, p, SEEDED, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True))
    }
    batch = ContinuousBatch(engine.model, SEEDED, slots=4, max_length=engine.max_length,
                            eos_id=engine.eos_id)  # fmt: skip
    batch.chunk = 12
    got = {f.index: f.row.new for f in batch.run(
        Queued(i, p, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True)))
        if f.row is not None}  # fmt: skip
    assert got == want
    assert batch.prefills == len(prompts)
    assert batch.rides >= len(prompts) - 4  # all but the first rows' prompts rode along
    assert batch.prefill_calls <= 4  # the first group waited for nothing that decoded


@pytest.mark.parametrize("name", MODELS)
def test_a_chunked_prefill_matches_a_one_shot_prefill(name):
    """A 45-token prompt prefilled 8 tokens at a time in row 1 of a 3-row cache (others
    decoding in between) gives the logits of a one-shot prefill, and so do the decode
    steps after it (float32, within 1e-4)."""
    import torch

    engine = _engine(name)
    (prompt,) = mixed_prompts(engine.vocab_size, [45], seed=8)
    others = mixed_prompts(engine.vocab_size, [6, 5], seed=9)
    outs = []
    ride = engine.model.packable
    for chunk, riding in ((8, False), (1000, False)) + (((8, True),) if ride else ()):
        batch = ContinuousBatch(engine.model, GREEDY.copy(max_new_tokens=50), slots=3,
                                max_length=engine.max_length, eos_id=None)  # fmt: skip
        batch.chunk = chunk
        with torch.inference_mode():
            for r, ids in ((0, others[0]), (2, others[1])):
                batch._admit(r, Queued(r, ids), ids)
                first = batch._chunk(r)
                assert first is not None
                batch._take(r, batch._draw(r, first))
            batch._admit(1, Queued(1, prompt), prompt)
            logits = None
            while riding and (pending := batch._slot(1).pending):
                # each chunk inside a decode step of the other rows
                logits = batch._step([(1, min(chunk, len(pending)))])[1][0][:, -1]
            while logits is None and (logits := batch._chunk(1)) is None:
                batch._step()  # the other rows decode between the chunks
            batch._take(1, 7)
            steps = [logits[0]] + [batch._step()[0][1] for _ in range(3)]
        outs.append(torch.stack(steps))
    for other in outs[1:]:
        assert (outs[0] - other).abs().max().item() <= 1e-4
    assert len(outs) == (3 if ride else 2)
