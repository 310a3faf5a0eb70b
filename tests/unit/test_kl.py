"""KL(A||B) of `--perplexity FILE --compare B`: against a direct computation with both models
in memory, on the reference fixture and a perturbed copy of it."""

from __future__ import annotations

import io
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

import swamla_tui
from swamla_tui.base.scoring import format_kl, percentile, summarise_kl
from swamla_tui.cli.eval import compare_args
from swamla_tui.cli.main import build_parser, check_args, main
from swamla_tui.runtime.kl import KLRecorder, token_kl
from swamla_tui.runtime.perplexity import run_perplexity, scored_ids
from tests.support.helpers import FIXTURE_CKPT

SHORT = "You: Hello there, how are you today?\nAssistant: I am fine, thank you. "
LONG = SHORT * 8


def _loader(lm):
    return lambda _say: lm


def _direct(lm_a, lm_b, text):
    """Per-token KL and top-1 agreement from one full forward of each model (float64)."""
    ids, _ = scored_ids(lm_a, text)
    x = torch.tensor([ids])
    with torch.inference_mode():
        la = torch.log_softmax(lm_a.model(x)[0, :-1].double(), -1)
        lb = torch.log_softmax(lm_b.model(x)[0, :-1].double(), -1)
    kl = F.kl_div(lb, la, log_target=True, reduction="none").sum(-1)
    same = (la.argmax(-1) == lb.argmax(-1)).double().mean()
    return kl.tolist(), float(same)


def test_token_kl_matches_the_formula_and_skips_zero_probabilities():
    g = torch.Generator().manual_seed(0)
    la = torch.log_softmax(torch.randn(5, 11, generator=g), -1)
    lb = torch.log_softmax(torch.randn(5, 11, generator=g), -1)
    want = (la.double().exp() * (la.double() - lb.double())).sum(-1)
    assert torch.allclose(token_kl(la, lb), want, atol=1e-12)
    assert torch.equal(token_kl(la, la), torch.zeros(5, dtype=torch.float64))
    la[0, 3] = -math.inf  # A gives token 3 probability 0: its term is 0, not nan
    assert torch.isfinite(token_kl(la, lb)).all()


def test_percentile_and_summary_follow_numpys_linear_rule():
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 99) == pytest.approx(99.01)
    assert percentile(xs, 50) == pytest.approx(50.5)
    assert percentile([3.0], 99) == 3.0
    s = summarise_kl("a", "b", [0.0, 0.1, 0.2, 0.3], same_top1=3)
    assert s.mean == pytest.approx(0.15)
    assert s.median == pytest.approx(0.15)
    assert s.max == pytest.approx(0.3)
    assert s.same_top1 == pytest.approx(0.75)
    assert s.stderr == pytest.approx(math.sqrt(((0.15**2 + 0.05**2) * 2 / 3) / 4))
    assert "75.00%" in format_kl(s)


def test_kl_equals_the_direct_computation(fixture_lm, fixture_lm_b, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(SHORT, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    res_json = tmp_path / "r.json"
    run_perplexity(
        [_loader(fixture_lm), _loader(fixture_lm_b)], f, output=res_json, out=out, err=err
    )
    data = json.loads(res_json.read_text(encoding="utf-8"))
    assert "kl" not in data[0]
    kl = data[1]["kl"]
    want, same = _direct(fixture_lm, fixture_lm_b, SHORT)
    assert kl["tokens"] == len(want) == data[1]["tokens"]
    assert max(abs(a - b) for a, b in zip(kl["per_token"], want, strict=True)) < 1e-5
    assert kl["mean"] == pytest.approx(sum(want) / len(want), abs=1e-6)
    assert kl["mean"] > 1e-3  # the perturbed model really differs
    assert kl["same_top1"] == pytest.approx(same)
    assert kl["p99"] == pytest.approx(percentile(want, 99), abs=1e-5)
    assert "mean KL(A||B)" in out.getvalue()


def test_a_model_against_itself_gives_zero(fixture_lm, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(LONG, encoding="utf-8")
    res_json = tmp_path / "r.json"
    run_perplexity(
        [_loader(fixture_lm), _loader(fixture_lm)],
        f,
        stride=16,
        output=res_json,
        out=io.StringIO(),
        err=io.StringIO(),
    )
    data = json.loads(res_json.read_text(encoding="utf-8"))
    kl = data[1]["kl"]
    assert kl["tokens"] == data[0]["tokens"] > fixture_lm.max_length  # several windows
    assert kl["mean"] == 0.0 and kl["max"] == 0.0 and kl["same_top1"] == 1.0
    # one checkpoint run twice the same way: the rows are told apart by how they ran
    assert data[0]["checkpoint"].endswith("[float32]")


def test_other_windows_skip_kl_with_a_note(fixture_lm, test_tokenizer_dir, tmp_path):
    short = swamla_tui.load(FIXTURE_CKPT, tokenizer=test_tokenizer_dir, max_length=32)
    f = tmp_path / "t.txt"
    f.write_text(LONG, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    res = run_perplexity([_loader(fixture_lm), _loader(short)], f, out=out, err=err)
    assert len(res) == 2
    assert "KL divergence skipped: the windows differ" in err.getvalue()
    assert "KL(A||B)" not in out.getvalue()


def test_recorder_refuses_what_the_disk_cannot_hold():
    with pytest.raises(OSError, match="GiB of temporary disk"):
        KLRecorder(range(10**7), 10**6, 128)


def test_compare_flags_apply_to_b_only():
    args = build_parser().parse_args(
        ["--perplexity", "f", "--compare", "b", "--quantize", "int8", "--compare_quantize", "none"]
    )
    assert check_args(args) is None
    b = compare_args(args)
    assert b.quantize is None and args.quantize == "int8"
    args = build_parser().parse_args(["--perplexity", "f", "--compare", "b"])
    args.compare_dtype = "bfloat16"
    assert compare_args(args).dtype == "bfloat16" and args.dtype == "auto"


def test_compare_flags_need_compare(capsys):
    assert main(["--perplexity", "f", "--compare_dtype", "bfloat16"]) == 2
    assert "--compare_dtype applies only to --perplexity with --compare" in capsys.readouterr().err


def test_cli_bf16_against_float32(test_tokenizer_dir, tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text(LONG, encoding="utf-8")
    out = tmp_path / "r.json"
    argv = ["--checkpoint", str(FIXTURE_CKPT), "--tokenizer", str(test_tokenizer_dir)]
    rel = os.path.relpath(FIXTURE_CKPT)  # the same file, spelled another way
    argv += ["--device", "cpu", "--dtype", "float32", "--compare", rel]
    argv += ["--compare_dtype", "bfloat16", "--perplexity", str(f), "--output", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data[0]["checkpoint"].endswith("[float32]")
    assert data[1]["checkpoint"].endswith("[bfloat16]")
    kl = data[1]["kl"]
    assert 0 < kl["mean"] < 0.05 and kl["same_top1"] > 0.5
