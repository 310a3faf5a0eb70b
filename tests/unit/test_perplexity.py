"""Perplexity: the strided rule against direct cross-entropy on the reference fixture."""

from __future__ import annotations

import io
import json
import math
import os
import threading

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from swamla_tui.base.errors import SwamlaError
from swamla_tui.runtime.perplexity import (
    PerplexityCancelled,
    PerplexityError,
    PerplexityResult,
    TextFileError,
    format_results,
    perplexity,
    plan_rolling,
    plan_windows,
    read_text_file,
    run_perplexity,
    score_ids,
    stderr_progress,
)

LONG_TEXT = (
    "You: Hello there, how are you today?\nAssistant: I am fine, thank you. "
    "The quick brown fox jumps over the lazy dog. Once upon a time, in a land far away, "
    "there lived a model that liked to talk about science and magic. é ü ß 日本 🙂\n"
) * 6


def _ids(n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 512, (n,), generator=g).tolist()


def _hand_strided_nll(lm, ids: list[int], length: int, stride: int) -> tuple[float, int]:
    """Hugging Face's strided loop, written out: one full forward per window."""
    n, prev_end, nll, count = len(ids), 0, 0.0, 0
    for begin in range(0, n, stride):
        end = min(begin + length, n)
        trg_len = end - prev_end
        logp = torch.log_softmax(lm.logits(torch.tensor([ids[begin:end]]))[0], dim=-1)
        for t in range(max(end - trg_len, 1), end):
            assert t - 1 - begin >= 0, "a target without context in its window"
            nll -= float(logp[t - 1 - begin, ids[t]])
            count += 1
        prev_end = end
        if end == n:
            break
    return nll, count


def test_short_text_equals_direct_cross_entropy(fixture_lm):
    lm = fixture_lm
    text = "Once upon a time, in a land far away, there lived a model."
    ids = [lm.eos_id, *lm.encode(text)]
    assert len(ids) < lm.max_length
    logits = lm.logits(torch.tensor([ids]))[0]
    direct = F.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="mean")
    r = perplexity(lm, text)
    assert r.tokens == len(ids) - 1 == len(lm.encode(text))
    assert r.loss == pytest.approx(float(direct), abs=1e-5)
    assert r.perplexity == pytest.approx(math.exp(float(direct)), rel=1e-5)
    bpb = float(direct) * r.tokens / math.log(2) / len(text.encode("utf-8"))
    assert r.bits_per_byte == pytest.approx(bpb, rel=1e-6)
    assert r.checkpoint == lm.source and r.seconds > 0


@pytest.mark.parametrize("stride", [None, 50, 127, 1])
def test_long_ids_equal_hand_strided_computation(fixture_lm, stride):
    lm = fixture_lm
    length = lm.max_length
    ids = _ids(300 if stride != 1 else 140)
    nll, n = score_ids(lm, ids, stride=stride, batch_size=3)
    want, count = _hand_strided_nll(lm, ids, length, stride or length // 2)
    assert n == count == len(ids) - 1
    assert nll == pytest.approx(want, rel=1e-5)


def test_long_text_equals_hand_strided_computation(fixture_lm):
    lm = fixture_lm
    ids = [lm.eos_id, *lm.encode(LONG_TEXT)]
    assert len(ids) > 2 * lm.max_length
    r = perplexity(lm, LONG_TEXT, stride=40)
    want, count = _hand_strided_nll(lm, ids, lm.max_length, 40)
    assert r.tokens == count
    assert r.loss == pytest.approx(want / count, rel=1e-5)
    assert r.bits_per_byte == pytest.approx(
        want / math.log(2) / len(LONG_TEXT.encode("utf-8")), rel=1e-5
    )


def test_batch_size_and_padding_do_not_change_the_result(fixture_lm):
    ids = _ids(333, seed=3)  # the last window is short: padded within its batch
    one = score_ids(fixture_lm, ids, stride=48, batch_size=1)
    many = score_ids(fixture_lm, ids, stride=48, batch_size=4)
    assert one[1] == many[1]
    assert many[0] == pytest.approx(one[0], rel=1e-5)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 400), st.integers(2, 64), st.data())
def test_windows_score_each_token_once_with_enough_context(n, length, data):
    stride = data.draw(st.integers(1, length - 1))
    wins = plan_windows(n, length, stride)
    targets = [t for w in wins for t in range(w.first, w.end)]
    assert targets == list(range(1, n))  # each target once, in order
    for w in wins:
        assert 0 < w.end - w.begin <= length and w.begin < w.first <= w.end
        assert w.first - w.begin >= min(w.first, length - stride)  # left context of `first`


def test_progress_and_cancel(fixture_lm):
    seen: list[tuple[int, int]] = []
    score_ids(
        fixture_lm, _ids(260), stride=32, batch_size=2, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[0] == (0, 259) and seen[-1] == (259, 259)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    stop = threading.Event()
    stop.set()
    with pytest.raises(PerplexityCancelled):
        score_ids(fixture_lm, _ids(260), cancel=stop)


@pytest.mark.parametrize("stride", [0, -3, 128, 500])
def test_bad_stride_is_one_line(fixture_lm, stride):
    with pytest.raises(PerplexityError) as e:
        score_ids(fixture_lm, _ids(50), stride=stride)
    assert "stride" in str(e.value) and "\n" not in str(e.value)


def test_empty_text_is_an_error(fixture_lm):
    with pytest.raises(PerplexityError, match="too short"):
        score_ids(fixture_lm, [5])
    ids_only = _ids(1)
    with pytest.raises(PerplexityError):
        score_ids(fixture_lm, ids_only)


# ------------------------------------------------------------------------------ the file
def test_read_text_file_errors(tmp_path):
    cases = {}
    cases["missing"] = tmp_path / "nope.txt"
    cases["folder"] = tmp_path
    binary = tmp_path / "a.bin"
    binary.write_bytes(b"abc\x00\x01\x02")
    cases["binary"] = binary
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    cases["UTF-8"] = latin
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    cases["empty"] = empty
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        cases["FIFO"] = fifo
    words = {
        "missing": "no such file",
        "folder": "is a folder",
        "binary": "looks binary",
        "UTF-8": "not UTF-8",
        "empty": "empty file",
        "FIFO": "FIFO",
    }
    for kind, path in cases.items():
        with pytest.raises(TextFileError) as e:
            read_text_file(path)
        msg = str(e.value)
        assert isinstance(e.value, SwamlaError) and "\n" not in msg
        assert words[kind] in msg and str(path) in msg, (kind, msg)


def test_read_text_file_reads_utf8_and_drops_bom(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes("\ufeffhé 日本\n".encode())
    assert read_text_file(f) == "hé 日本\n"


def test_run_perplexity_table_and_json(fixture_lm, tmp_path):
    f = tmp_path / "text.txt"
    f.write_text(LONG_TEXT, encoding="utf-8")
    out_json = tmp_path / "result.json"
    loaded: list[str] = []

    def loader(progress):
        loaded.append("x")
        progress("loading")
        return fixture_lm

    out, err = io.StringIO(), io.StringIO()
    res = run_perplexity([loader, loader], f, stride=64, output=out_json, out=out, err=err)
    assert len(res) == 2 and len(loaded) == 2
    assert res[0].loss == pytest.approx(res[1].loss)
    data = json.loads(out_json.read_text())
    fields = {"checkpoint", "tokens", "loss", "perplexity", "bits_per_byte", "seconds"}
    assert [set(d) for d in data] == [fields, fields | {"kl"}]  # B's row: KL(A||B)
    assert data[0]["tokens"] == res[0].tokens and data[0]["loss"] == pytest.approx(res[0].loss)
    table = out.getvalue().splitlines()
    assert table[0].split()[:4] == ["checkpoint", "tokens", "loss", "perplexity"]
    assert f"{res[0].tokens:,}" in table[1] and f"{res[0].perplexity:.3f}" in table[1]
    assert "\r" not in err.getvalue()  # no bar: err is not a terminal


def test_run_perplexity_checks_the_file_before_loading(tmp_path):
    def loader(progress):
        raise AssertionError("loaded a model for a missing file")

    with pytest.raises(TextFileError, match="no such file"):
        run_perplexity([loader], tmp_path / "missing.txt", out=io.StringIO(), err=io.StringIO())


def test_stderr_progress_only_on_a_terminal():
    assert stderr_progress("x", io.StringIO()) is None

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    t = Tty()
    bar = stderr_progress("ckpt", t)
    assert bar is not None
    bar(5, 10)
    bar(10, 10)
    assert "5/10" in t.getvalue() and t.getvalue().endswith("\n")


def test_format_results_aligns_columns():
    rs = [
        PerplexityResult("a.pt", 1000, 2.0, math.exp(2.0), 1.1, 2.0),
        PerplexityResult("longer/name.pt", 20, 3.5, math.exp(3.5), 2.2, 0.5),
    ]
    lines = format_results(rs).splitlines()
    assert len(lines) == 3 and len({len(x) for x in lines}) == 1
    assert "7.389" in lines[1] and "500" in lines[1]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.timeout(30)
def test_a_fifo_output_is_refused_before_any_model_loads(tmp_path):
    from swamla_tui.base.errors import SwamlaError
    from swamla_tui.runtime.perplexity import run_perplexity

    text = tmp_path / "text.txt"
    text.write_text("some text to score\n")
    fifo = tmp_path / "result.json"
    os.mkfifo(fifo)

    def never(_say):
        raise AssertionError("the model must not load")

    with pytest.raises(SwamlaError, match="FIFO"):
        run_perplexity([never], text, output=fifo)


# ------------------------------------------------------------------------------ rolling windows
def _lm_eval_pairs(
    tokens: list[int], prefix: int, max_len: int
) -> list[tuple[list[int], list[int]]]:
    """lm-eval's `loglikelihood_rolling` requests, rewritten here from its description:
    disjoint prediction windows of `max_len` tokens; the first is predicted from the prefix
    token, each later one from the `max_len` tokens that end just before its last target."""
    pairs, done = [], 0
    while done < len(tokens):
        n = min(max_len, len(tokens) - done)
        stop = done + n
        if done == 0:
            ctx = [prefix]
        else:
            ctx = tokens[max(0, stop - max_len - 1) : done]
        pairs.append((ctx, tokens[done:stop]))
        done = stop
    return pairs


def _lm_eval_score(lm, pairs: list[tuple[list[int], list[int]]]) -> tuple[float, int]:
    """Each pair as lm-eval's `_loglikelihood_tokens` scores it: the last `max_length + 1`
    ids of context + continuation, the continuation's log-probabilities from one forward."""
    nll, n = 0.0, 0
    for ctx, cont in pairs:
        full = (ctx + cont)[-(lm.max_length + 1) :]
        logp = torch.log_softmax(lm.logits(torch.tensor([full[:-1]]))[0], dim=-1)
        rows = logp[len(full) - 1 - len(cont) :]
        nll -= float(rows.gather(1, torch.tensor(cont)[:, None]).sum())
        n += len(cont)
    return nll, n


@pytest.mark.parametrize("n_tokens", [5, 127, 128, 129, 300, 338])
def test_rolling_equals_lm_evals_plan_scored_by_hand(fixture_lm, n_tokens):
    lm = fixture_lm
    assert lm.max_length == 128
    tokens = _ids(n_tokens, seed=n_tokens)
    ids = [lm.eos_id, *tokens]
    nll, n = score_ids(lm, ids, windows="rolling", batch_size=2)
    want, count = _lm_eval_score(lm, _lm_eval_pairs(tokens, lm.eos_id, lm.max_length))
    assert n == count == n_tokens
    assert nll == pytest.approx(want, rel=1e-5)


def test_rolling_and_strided_differ_past_the_context(fixture_lm):
    ids = [fixture_lm.eos_id, *_ids(338, seed=1)]
    rolling, _ = score_ids(fixture_lm, ids, windows="rolling")
    strided, _ = score_ids(fixture_lm, ids)
    assert abs(rolling - strided) > 1e-3  # other windows, other contexts
    short = ids[:100]
    assert score_ids(fixture_lm, short, windows="rolling")[0] == pytest.approx(
        score_ids(fixture_lm, short)[0], rel=1e-6
    )  # within one window both are a plain forward


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 500), st.integers(1, 64))
def test_rolling_plan_is_lm_evals_own(n, length):
    lm_eval_utils = pytest.importorskip("lm_eval.utils")
    tokens = list(range(1000, 1000 + n - 1))  # distinct ids: positions can be read back
    theirs = [
        lm_eval_utils.make_disjoint_window(w)
        for w in lm_eval_utils.get_rolling_token_windows(tokens, -1, length, 1)
    ]
    assert theirs == _lm_eval_pairs(tokens, -1, length)  # the test's own rewrite agrees
    ids = [-1, *tokens]
    ours = plan_rolling(n, length)
    assert len(ours) == len(theirs)
    for w, (ctx, cont) in zip(ours, theirs, strict=True):
        assert ids[w.first : w.end] == cont
        fed = (ctx + cont)[-(length + 1) :][:-1]  # what lm-eval feeds the model
        assert ids[w.begin : w.end - 1] == fed


def test_rolling_refuses_a_stride(fixture_lm):
    with pytest.raises(PerplexityError, match="--stride applies to --windows strided"):
        score_ids(fixture_lm, _ids(50), stride=10, windows="rolling")
    with pytest.raises(PerplexityError, match="windows must be one of"):
        score_ids(fixture_lm, _ids(50), windows="sliding")


def test_perplexity_text_rolling_uses_the_bos_prefix(fixture_lm):
    lm = fixture_lm
    r = perplexity(lm, LONG_TEXT, windows="rolling")
    prefix = lm.tokenizer.bos_token_id
    prefix = lm.eos_id if prefix is None else prefix
    tokens = lm.encode(LONG_TEXT)
    assert len(tokens) > lm.max_length
    want, count = _lm_eval_score(lm, _lm_eval_pairs(tokens, prefix, lm.max_length))
    assert r.tokens == count and r.loss == pytest.approx(want / count, rel=1e-5)


# ------------------------------------------------------------------ --expert-stats
def _v2():
    import swamla_tui
    from tests.support.helpers import V2_CKPT, V2_TOKENIZER

    return swamla_tui.load(V2_CKPT, tokenizer=V2_TOKENIZER)


def test_expert_tally_counts_each_scored_position_once():
    from swamla_tui.engine.routing import RouteTally
    from swamla_tui.runtime.perplexity import score_ids

    lm = _v2()
    ids = [
        int(i) for i in torch.randint(1, 384, (100,), generator=torch.Generator().manual_seed(1))
    ]
    # one window: the positions 0..N-2 of the plain forward, counted by an independent bincount
    seen: dict[int, torch.Tensor] = {}
    for i, blk in enumerate(lm.model.transformer.h):
        if hasattr(blk, "ffn") and hasattr(blk.ffn, "router"):
            blk.ffn.record = lambda lg, sel, w, i=i: seen.__setitem__(i, sel[0, :-1])
    with torch.inference_mode():
        lm.model(torch.tensor([ids]))
    for i in seen:
        lm.model.transformer.h[i].ffn.record = None
    with RouteTally(lm.model) as tally:
        _, n = score_ids(lm, ids, tally=tally)
    moe, _ = tally.tallies()
    for t in moe:
        assert t.tokens == n == 99
        assert t.counts == torch.bincount(seen[t.layer].reshape(-1), minlength=32).tolist()
    # overlapping windows (stride 10 < window 128 // 2): still one count per scored target
    with RouteTally(lm.model) as tally:
        _, n = score_ids(lm, ids + ids, stride=10, batch_size=3, tally=tally)
    for t in tally.tallies()[0]:
        assert t.tokens == n == 199 and sum(t.counts) == 8 * n


def test_run_perplexity_writes_the_expert_stats(tmp_path):
    from swamla_tui.runtime.perplexity import run_perplexity

    text = tmp_path / "t.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 3, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    lm = _v2()
    res = run_perplexity([lambda say: lm], text, out=out, err=err, expert_stats=tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["source"] == "perplexity" and data["tokens"] == res[0].tokens
    assert [d["layer"] for d in data["layers"]] == [2, 5]
    for d in data["layers"]:
        assert sum(d["tokens_per_expert"]) == 8 * res[0].tokens and d["n_experts"] == 32
        assert 0 < d["router_entropy"] <= d["max_entropy"] == pytest.approx(math.log(32))
    assert "layer 2: top-8 of 32" in err.getvalue()
    from swamla_tui.engine.routing import routed_layers

    assert all(m.record is None for _, m in routed_layers(lm.model)[0])  # uninstalled


@pytest.mark.parametrize(
    ("quantize", "label"),
    [
        (None, "float32"),
        ("int8-weight", "float32, int8-weight"),
        ("int8-dynamic", "float32, int8-dynamic"),
    ],
)
def test_how_it_runs_names_the_int8_path(quantize, label):
    """A file compared with itself is told apart by these labels; "int8" is labelled with
    the path it picked (int8-dynamic, int8-split or int8-weight), never the ambiguous name."""
    import swamla_tui
    from swamla_tui.model.quant import pick_int8
    from swamla_tui.runtime.perplexity import how_it_runs
    from tests.support.helpers import FIXTURE_CKPT

    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, quantize=quantize)
    assert how_it_runs(lm) == label
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, quantize="int8")
    assert how_it_runs(lm) == f"float32, {pick_int8('int8')}"
