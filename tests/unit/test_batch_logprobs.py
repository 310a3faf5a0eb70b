"""``--logprobs N`` in headless batch JSONL (batch_logprobs.py, headless.py, the CLI)."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from swamla_tui.base.params import SamplingParams
from swamla_tui.batch.job import BatchJob
from swamla_tui.batch.logprobs import LOGPROB_FIELDS, LogprobRow
from swamla_tui.headless.run import run_headless
from tests.support.helpers import FIXTURE_CKPT, ROOT

PROMPTS = ["Hello there", "Once upon a time", "The quick brown fox"]


def _first_token_by_hand(lm, prompt: str, token: int, p: SamplingParams) -> float:
    """log P(token) of the first new token under temperature + top-k (no penalty, no top-p),
    from the plain full forward, written out apart from the engine's sampling code."""
    ids = lm.encode(prompt)
    logits = lm.logits(torch.tensor([ids]))[0, -1].double()  # [V]
    x = logits / p.temperature
    kth = torch.topk(x, p.top_k).values[-1]
    x = x.masked_fill(x < kth, float("-inf"))
    return float(torch.log_softmax(x, dim=0)[token])


def test_rows_carry_logprobs_that_match_the_full_forward(fixture_lm, tmp_path):
    params = SamplingParams(
        temperature=0.8, top_k=7, top_p=1.0, repetition_penalty=1.0, max_new_tokens=5, seed=4
    )
    out = tmp_path / "lp.jsonl"
    job = BatchJob(list(PROMPTS), params, 2, str(out))
    err = io.StringIO()
    assert run_headless(job, lambda p: fixture_lm, err=err, logprobs=3) == 0
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in recs] == PROMPTS
    for rec in recs:
        assert list(rec) == list(LOGPROB_FIELDS)
        lps = rec["logprobs"]
        assert len(lps) == rec["new_tokens"] > 0
        for t in lps:
            assert set(t) == {
                "token",
                "text",
                "logprob",
                "raw_logprob",
                "entropy",
                "top",
                "raw_top",
            }
            assert t["text"] == fixture_lm.decode([t["token"]])
            assert len(t["raw_top"]) == 3 and 1 <= len(t["top"]) <= 3
            assert t["logprob"] is not None and t["logprob"] <= 0.0
        first = lps[0]
        want = _first_token_by_hand(fixture_lm, rec["prompt"], first["token"], params)
        assert first["logprob"] == pytest.approx(want, abs=1e-4)
        raw = torch.log_softmax(
            fixture_lm.logits(torch.tensor([fixture_lm.encode(rec["prompt"])]))[0, -1].double(), 0
        )
        assert first["raw_logprob"] == pytest.approx(float(raw[first["token"]]), abs=1e-4)
        assert [a["token"] for a in first["raw_top"]] == torch.topk(raw, 3).indices.tolist()
        assert math.isfinite(first["entropy"]) and first["entropy"] >= 0


def test_stdout_jsonl_has_logprobs_too(fixture_lm):
    out, err = io.StringIO(), io.StringIO()
    job = BatchJob(PROMPTS[:1], SamplingParams(temperature=0.0, max_new_tokens=3), 1)
    assert run_headless(job, lambda p: fixture_lm, err=err, out=out, logprobs=1) == 0
    rec = json.loads(out.getvalue())
    assert len(rec["logprobs"]) == 3
    assert all(t["logprob"] == 0.0 and t["entropy"] == 0.0 for t in rec["logprobs"])  # greedy


def test_a_resumed_row_without_logprobs_runs_again():
    row = LogprobRow(0, "p")
    row.restore({"index": 0, "prompt": "p", "completion": "x", "finish_reason": "length"})
    assert not row.final
    row.restore({**row.record(), "logprobs": []})
    assert row.final and row.record()["logprobs"] == []


def _run_cli(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "swamla_tui", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def test_cli_logprobs_end_to_end(test_tokenizer_dir, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello there\nHi\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    flags = ["--checkpoint", str(FIXTURE_CKPT), "--tokenizer", str(test_tokenizer_dir)]
    flags += ["--prompts_file", str(prompts), "--max_new_tokens", "4", "--seed", "1"]
    done = _run_cli(*flags, "--output", str(out), "--logprobs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [len(r["logprobs"]) for r in recs] == [r["new_tokens"] for r in recs]
    assert all(len(t["raw_top"]) == 2 for r in recs for t in r["logprobs"])
    bad = _run_cli(*flags, "--output", str(tmp_path / "o.csv"), "--logprobs", "2", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "swamla-tui: error: --logprobs writes JSONL only: give --output FILE.jsonl "
        "(CSV and Markdown have no column for it)"
    ]
