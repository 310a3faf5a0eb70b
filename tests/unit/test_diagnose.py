"""--diagnose: weight statistics, residual scalars, KL, and the card end to end."""

from __future__ import annotations

import math

import pytest
import torch

from swamla_tui.cli.main import main
from swamla_tui.runtime.diagnose import (
    SENTENCE,
    mean_kl,
    residual_scalars,
    sentence_logprobs,
    weight_stats,
)
from swamla_tui.runtime.perplexity import perplexity
from tests.support.helpers import FIXTURE_CKPT


def test_weight_stats_fold_layers_and_count_nonfinite() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, generator=g), torch.randn(5, generator=g)
    bad = torch.tensor([1.0, float("nan"), -3.0, float("inf")])
    groups = {
        w.name: w
        for w in weight_stats(
            [("h.0.w", a), ("h.1.w", b), ("ln.weight", bad), ("idx", torch.arange(3))]
        )
    }
    assert set(groups) == {"h.*.w", "ln.weight"}  # integer tensors are not weights
    both = torch.cat([a.reshape(-1), b]).double()
    w = groups["h.*.w"]
    assert (w.tensors, w.numel, w.nonfinite) == (2, 17, 0)
    assert w.mean == pytest.approx(float(both.mean()), abs=1e-12)
    assert w.std == pytest.approx(float(both.std(unbiased=False)), rel=1e-9)
    assert w.max_abs == pytest.approx(float(both.abs().max()))
    ln = groups["ln.weight"]
    assert (ln.numel, ln.nonfinite, ln.mean, ln.max_abs) == (2, 2, -1.0, 3.0)


def test_residual_scalars_by_key() -> None:
    sd = {
        "_orig_mod.x0_lambdas": torch.tensor([0.5, 0.25]),
        "resid_lambdas": torch.tensor([1.0, 2.0], dtype=torch.bfloat16),
        "transformer.wte.weight": torch.zeros(2, 2),
    }
    assert residual_scalars(sd) == {
        "_orig_mod.x0_lambdas": [0.5, 0.25],
        "resid_lambdas": [1.0, 2.0],
    }
    assert residual_scalars({"w": torch.zeros(1)}) == {}


def test_mean_kl() -> None:
    p = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    q = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    want = (0.0 + 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)) / 2
    assert mean_kl(p, q) == pytest.approx(want, rel=1e-6)
    assert mean_kl(p, p) == pytest.approx(0.0, abs=1e-7)
    assert mean_kl(p, q) != pytest.approx(mean_kl(q, p), abs=1e-4)  # direction matters


def test_sentence_perplexity_is_the_apps(fixture_lm) -> None:
    _, ppl, n = sentence_logprobs(fixture_lm)
    ref = perplexity(fixture_lm, SENTENCE)
    assert n == ref.tokens
    assert ppl == pytest.approx(ref.perplexity, rel=1e-5)


def test_diagnose_card_end_to_end(test_tokenizer_dir, capsys) -> None:
    argv = ["--checkpoint", str(FIXTURE_CKPT), "--tokenizer", str(test_tokenizer_dir)]
    assert main([*argv, "--device", "cpu", "--diagnose"]) == 0
    out = capsys.readouterr().out
    assert "transformer.h.*.attn.wkv_b.weight" in out and "all finite" in out
    assert "none (no x0_lambdas / resid_lambdas in this model)" in out
    ppl = {
        line.split()[1]: float(line.split()[2])
        for line in out.splitlines()
        if line.strip().startswith("perplexity ")
    }
    assert set(ppl) == {"float32", "bfloat16"}
    assert ppl["bfloat16"] == pytest.approx(ppl["float32"], rel=0.05)
    kl = float(next(x for x in out.splitlines() if "KL(float32 || bfloat16)" in x).split()[3])
    assert 0.0 < kl < 0.01  # bf16 differs a little from float32, but not much


def test_diagnose_without_tokenizer_is_one_line(tmp_path, capsys) -> None:
    argv = ["--checkpoint", str(FIXTURE_CKPT), "--tokenizer", str(tmp_path), "--diagnose"]
    assert main([*argv, "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("swamla-tui: error: ")
