"""Streaming: stop strings, UTF-8 safety, timing fields, cancellation."""

from __future__ import annotations

import threading

from swamla_tui.base.params import SamplingParams
from swamla_tui.engine.stream import _held_back
from swamla_tui.engine.text import IncrementalDecoder


def test_held_back_prefixes():
    assert _held_back("hello\nYo", ["\nYou:"]) == 3
    assert _held_back("hello", ["\nYou:"]) == 0
    assert _held_back("abc\n", ["\nYou:", "xyz"]) == 1


def test_incremental_decoder_never_splits_characters(test_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(test_tokenizer_dir))
    text = "héllo 日本語 🙂 done ünïcödé " * 3
    ids = tok.encode(text)
    dec = IncrementalDecoder(tok)
    pieces = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_stream_stops_at_stop_string_and_reports(fixture_lm):
    lm = fixture_lm
    prompt = "You: Hello there\nAssistant:"
    full = lm.generate(prompt, temperature=0, max_new_tokens=40, repetition_penalty=1.0)
    assert len(full) > 12
    stop = full[6:10]
    s = lm.stream(
        prompt,
        SamplingParams(temperature=0, max_new_tokens=40, repetition_penalty=1.0),
        stop=[stop],
    )
    pieces = list(s)
    assert "".join(pieces) == s.text == full[: full.index(stop)]
    assert s.finish_reason == "stop"
    assert s.new_tokens < 40 and s.prompt_tokens == len(lm.encode(prompt))
    assert s.context_tokens == s.prompt_tokens + s.new_tokens


def test_stream_length_and_tokens_per_second(fixture_lm):
    s = fixture_lm.stream("Once upon a time", temperature=0.7, seed=3, max_new_tokens=12)
    text = "".join(s)
    assert s.finish_reason in ("length", "eos") and s.new_tokens <= 12
    assert s.text == text
    assert s.tokens_per_second > 0


def test_stream_cancel_from_other_thread(fixture_lm):
    s = fixture_lm.stream("Once upon a time", temperature=0.7, seed=3, max_new_tokens=100)
    for got, _ in enumerate(s, start=1):
        if got == 3:
            threading.Thread(target=s.cancel).start()
    assert s.finish_reason == "cancelled"
    assert s.new_tokens <= 6
