"""Issue 11 engine items and issue 10's engine boundary: tokenizer panics surface as
`TokenizerError`, out-of-vocabulary prompts fail alone, options travel typed, streams never
write into the caller's params, one stop-string rule for streams and batches."""

from __future__ import annotations

import pytest
import torch

import swamla_tui
from swamla_tui.base.errors import SwamlaError, TokenizerError
from swamla_tui.base.params import SamplingParams
from swamla_tui.base.stops import StopText, first_stop
from swamla_tui.engine.options import EngineOptions
from swamla_tui.engine.text import TextCodec
from swamla_tui.model.swa import SWABlock
from tests.support.helpers import FIXTURE_CKPT, layer
from tests.support.hostile import PanickingTokenizer


@pytest.fixture
def lm_with(fixture_lm):
    """A LoadedModel sharing the fixture's weights, with a replaceable tokenizer."""
    from swamla_tui.runtime.loaded_model import LoadedModel

    def make(tokenizer):
        return LoadedModel(
            fixture_lm.model,
            fixture_lm.config,
            tokenizer,
            source="test",
            meta={},
            max_length=fixture_lm.max_length,
            stored_dtype="float32",
            notices=[],
        )

    return make


# ------------------------------------------------------------------ 10. tokenizer panics
def test_panic_in_encode_is_a_tokenizer_error(lm_with, fixture_lm):
    lm = lm_with(PanickingTokenizer(fixture_lm.tokenizer, encode=True))
    with pytest.raises(TokenizerError) as ei:
        lm.stream("hello", temperature=0, max_new_tokens=3)
    assert "PanicException" in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(TokenizerError):
        lm.encode("hello")


def test_panic_in_decode_is_a_tokenizer_error_from_the_stream(lm_with, fixture_lm):
    lm = lm_with(PanickingTokenizer(fixture_lm.tokenizer, decode=True))
    s = lm.stream("Hello there", temperature=0, max_new_tokens=5, repetition_penalty=1.0)
    with pytest.raises(TokenizerError) as ei:
        list(s)
    assert "decoding" in str(ei.value)


def test_panic_in_one_batch_prompt_fails_that_row_only(lm_with, fixture_lm):
    inner = fixture_lm.tokenizer

    class OnePanics(PanickingTokenizer):
        def encode(self, text: str, **kw: object) -> list[int]:
            self.panic_encode = text == "boom"
            return super().encode(text, **kw)

    lm = lm_with(OnePanics(inner))
    res = sorted(
        lm.generate_batch(
            ["Hello", "boom", "Once upon"], SamplingParams(temperature=0, max_new_tokens=4)
        ),
        key=lambda r: r.index,
    )
    assert [r.finish_reason for r in res][1] == "error" and "PanicException" in res[1].error
    assert res[0].finish_reason in ("length", "eos") and res[2].finish_reason in ("length", "eos")


def test_keyboard_interrupt_is_not_swallowed():
    class Interrupting:
        def encode(self, text: str, **kw: object) -> list[int]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TextCodec(Interrupting()).encode("x")


# ------------------------------------------------------------------ 14. vocabulary sizes
def test_prompt_ids_outside_the_model_vocabulary(lm_with, fixture_lm):
    v: int = fixture_lm.config.vocab_size

    class Big(PanickingTokenizer):
        def encode(self, text: str, **kw: object) -> list[int]:
            return [1, 2, v + 5] if "big" in text else [1, 2, 3]

        def __len__(self) -> int:
            return v + 100

    lm = lm_with(Big(fixture_lm.tokenizer))
    with pytest.raises(SwamlaError) as ei:
        lm.stream("big prompt", temperature=0, max_new_tokens=2)
    assert str(v + 5) in str(ei.value) and "vocabulary" in str(ei.value)
    with pytest.raises(SwamlaError):
        lm.generate_ids([[1, v]], max_new_tokens=2)
    res = sorted(
        lm.generate_batch(["big one", "small"], SamplingParams(temperature=0, max_new_tokens=3)),
        key=lambda r: r.index,
    )
    assert res[0].finish_reason == "error" and "vocabulary" in res[0].error
    assert res[1].finish_reason in ("length", "eos") and res[1].new_tokens >= 1


def test_vocabulary_mismatch_notices(tmp_path, test_tokenizer_dir):
    from swamla_tui.runtime.load import _vocab_notices

    assert _vocab_notices(None, 10) == []
    assert "tokenizer only 5" in _vocab_notices(list(range(5)), 10)[0]
    assert "model only 10" in _vocab_notices(list(range(12)), 10)[0]
    assert _vocab_notices(list(range(10)), 10) == []
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=test_tokenizer_dir)
    n = len(lm.tokenizer)
    if n != lm.config.vocab_size:
        assert any("tokenizer" in x and str(n) in x for x in lm.notices)


# ------------------------------------------------------------------ options
def test_engine_options_from_env_is_the_one_reader():
    assert EngineOptions.from_env(env={}) == EngineOptions(True, False, True)
    env = {"SWAMLA_CUDA_GRAPHS": "0", "SWAMLA_COMPILE": "1", "SWAMLA_CPU_LAYOUT": "false"}
    assert EngineOptions.from_env(env=env) == EngineOptions(False, True, False)
    assert EngineOptions.from_env(compile=False, env=env).compile is False
    assert EngineOptions.from_env(compile=True, env={}).compile is True


def test_engine_options_reach_the_model():
    from swamla_tui.model.fuse import OneDNNLinear, onednn_float32_products

    rows = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, engine=EngineOptions(cpu_layout=False))
    w = layer(rows.model, 0, SWABlock).attn.q_proj.weight
    assert w.is_contiguous()  # row-major: the layout option was honoured
    cols = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, engine=EngineOptions(cpu_layout=True))
    w2 = layer(cols.model, 0, SWABlock).attn.q_proj.weight
    if onednn_float32_products():  # AMD: row-major weights, products in oneDNN
        assert isinstance(layer(cols.model, 0, SWABlock).attn.o_proj, OneDNNLinear)
        assert not isinstance(layer(rows.model, 0, SWABlock).attn.o_proj, OneDNNLinear)
    else:
        assert w2.stride()[0] == 1  # column-major (rows of the fused q/k/v product)
    assert torch.equal(w, w2)
    assert rows.engine_options.cpu_layout is False and rows.engine.pool.graphs is False


def test_swamla_compile_env_still_works(monkeypatch):
    monkeypatch.setenv("SWAMLA_COMPILE", "1")
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False)
    assert lm.engine_options.compile and lm.engine.pool.compile


# ------------------------------------------------------------------ params and stops
def test_stream_overrides_do_not_write_into_the_callers_params(fixture_lm):
    p = SamplingParams(temperature=0.9, max_new_tokens=7, seed=1)
    s = fixture_lm.stream("Hello", p, temperature=0, max_new_tokens=3)
    list(s)
    assert p.temperature == 0.9 and p.max_new_tokens == 7
    assert s.params is not p and s.params.temperature == 0 and s.new_tokens <= 3
    live = fixture_lm.stream("Hello", p)
    assert live.params is p  # without overrides the caller's object stays live


def test_stop_text_finds_the_earliest_stop_across_pieces():
    assert first_stop("abc STOP x END", ["END", "STOP"]) == 4
    st = StopText(["END", "STOP"])
    out = [st.push(x) for x in ["abc S", "TO", "P x END"]]
    assert "".join(out) == st.text == "abc " and st.stopped
    st2 = StopText(["\nYou:"])
    assert st2.push("hi\nYo") == "hi" and st2.finish() == "\nYo" and not st2.stopped


def test_batch_and_stream_cut_at_the_same_stop(fixture_lm):
    lm = fixture_lm
    params = SamplingParams(temperature=0, max_new_tokens=30, repetition_penalty=1.0)
    prompt = "You: Hello there\nAssistant:"
    full = lm.generate(prompt, temperature=0, max_new_tokens=30, repetition_penalty=1.0)
    assert len(full) > 10
    stops = [full[8:11], full[4:6]]  # the second occurs first
    streamed = lm.stream(prompt, params.copy(), stop=stops)
    text = "".join(streamed)
    (batched,) = list(lm.generate_batch([prompt], params.copy(), stop=stops))
    cut = min(full.find(s) for s in stops)
    assert cut <= 4
    assert text == batched.completion == full[:cut]
    assert streamed.finish_reason == batched.finish_reason == "stop"
