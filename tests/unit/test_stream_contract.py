"""One contract, two implementations: the test fake and the real `LoadedModel.stream`.

The UI tests run against `tests.support.fakes.FakeLM`; these checks keep the fake honest by
running the same assertions on the reference checkpoint (greedy, test tokenizer).
"""

from __future__ import annotations

import pytest

from swamla_tui.base.params import SamplingParams
from tests.support.fakes import FakeLM

PROMPT = "You: Hello there, how are you today?\nAssistant:"


@pytest.fixture(params=["fake", "real"])
def model(request: pytest.FixtureRequest):
    if request.param == "fake":
        return FakeLM([" Once", " upon", " a", " time", ",", " there", " was", " a", " fox"])
    return request.getfixturevalue("fixture_lm")


def greedy(max_new_tokens: int = 16) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)


def test_pieces_are_the_text_and_figures_add_up(model):
    params = greedy(8)
    stream = model.stream(PROMPT, params)
    assert stream.finish_reason is None
    pieces = list(stream)
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == stream.text
    assert stream.params is params  # the live object, read before each token
    assert stream.finish_reason in ("length", "eos")
    assert 1 <= stream.new_tokens <= 8
    assert stream.prompt_tokens == len(model.encode(PROMPT))
    assert stream.context_tokens == stream.prompt_tokens + stream.new_tokens
    assert stream.tokens_per_second >= 0.0
    assert stream.truncated is False


def test_stop_string_ends_the_stream_and_is_never_yielded(model):
    full = "".join(model.stream(PROMPT, greedy()))
    assert len(full) >= 6, full
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    stream = model.stream(PROMPT, greedy(), stop=(stop,))
    pieces = list(stream)
    assert "".join(pieces) == full[: full.find(stop)] == stream.text
    assert all(stop not in piece for piece in pieces)
    assert stop not in stream.text
    assert stream.finish_reason == "stop"


def test_cancel_ends_the_stream_within_one_token(model):
    stream = model.stream(PROMPT, greedy(64))
    pieces = iter(stream)
    next(pieces)
    made = stream.new_tokens
    stream.cancel()
    list(pieces)
    assert stream.finish_reason == "cancelled"
    assert stream.new_tokens <= made + 1


def test_timings_count_the_reply_and_a_cached_turn_reuses_the_prompt(model):
    """`timings` (ollama --verbose's figures): counts match the stream's own; with a
    `cache_key` the same prompt again prefills nothing (the fake reports what it is told)."""
    if isinstance(model, FakeLM):
        model.cached_tokens = 0
    first = model.stream(PROMPT, greedy(6), cache_key="contract")
    "".join(first)
    t = first.timings
    assert t.prompt_tokens == first.prompt_tokens and t.cached_tokens == 0
    assert t.generated_tokens == first.new_tokens >= 1
    assert t.ttft_s is not None and t.ttft_s >= 0 and t.prefill_s >= 0 and t.decode_s >= 0
    assert t.load_s is not None and t.load_s > 0
    if isinstance(model, FakeLM):
        model.cached_tokens = first.prompt_tokens
    again = model.stream(PROMPT, greedy(6), cache_key="contract")
    assert "".join(again) == first.text
    assert again.timings.cached_tokens == again.timings.prompt_tokens
    assert again.timings.prefill_tokens == 0
