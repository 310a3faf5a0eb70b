"""Headless batch mode (`--mode batch --output FILE` / piped stdout) through `cli.main`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from swamla_tui.batch.prompts import DEFAULT_PROMPTS
from swamla_tui.cli.main import main
from tests.support.helpers import FIXTURE_CKPT, ROOT

PROMPTS = [
    "Once upon a time, in a land far away,",
    "What is a list in Python?",
    "You: Hello there, how are you today?\u00a0é 日本",
    "The quick brown fox jumps over the lazy dog.",
    "Numbers 0123456789",
    "science",
]
ANSWERED = {"length", "stop", "eos"}
FIELDS = ["index", "prompt", "completion", "new_tokens", "seconds", "finish_reason", "error"]


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    # blank lines and surrounding spaces are skipped, like the original script
    path.write_text("\n".join(f"  {p}  " for p in PROMPTS) + "\n\n", encoding="utf-8")
    return path


def batch_argv(test_tokenizer_dir, *args: object) -> list[str]:
    """The CLI's arguments for a greedy 8-token batch run on the fixture; `args` follow
    (a repeated flag wins: ``"--max_new_tokens", 2``)."""
    return [
        "--checkpoint",
        str(FIXTURE_CKPT),
        "--tokenizer",
        str(test_tokenizer_dir),
        "--mode",
        "batch",
        "--device",
        "cpu",
        "--max_new_tokens",
        "8",
        "--temperature",
        "0",
        *map(str, args),
    ]


def run_cli(test_tokenizer_dir, *args: object) -> int:
    return main(batch_argv(test_tokenizer_dir, *args))


def read_jsonl(path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def expected_completions(fixture_lm, prompts, **kw) -> list[str]:
    from swamla_tui.base.params import SamplingParams

    params = SamplingParams(temperature=0.0, max_new_tokens=8, **kw)
    by_index = {r.index: r.completion for r in fixture_lm.generate_batch(prompts, params)}
    return [by_index[i] for i in range(len(prompts))]


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# -- the three formats -------------------------------------------------------------------


def test_jsonl_in_input_order(test_tokenizer_dir, fixture_lm, prompts_file, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    rc = run_cli(
        test_tokenizer_dir, "--prompts_file", prompts_file, "--output", out, "--batch_size", 4
    )
    assert rc == 0
    records = read_jsonl(out)
    assert [r["prompt"] for r in records] == PROMPTS
    assert all(list(r) == FIELDS for r in records)
    assert all(r["finish_reason"] in ANSWERED for r in records)
    assert all(isinstance(r["new_tokens"], int) and 1 <= r["new_tokens"] <= 8 for r in records)
    assert all(isinstance(r["seconds"], float) and r["seconds"] >= 0 for r in records)
    assert [r["completion"] for r in records] == expected_completions(fixture_lm, PROMPTS)
    err = capsys.readouterr().err
    assert "[6/6]" in err  # progress on stderr
    assert "Loading tokenizer" in err


def test_csv_output(test_tokenizer_dir, fixture_lm, prompts_file, tmp_path):
    out = tmp_path / "out.csv"
    assert run_cli(test_tokenizer_dir, "--prompts_file", prompts_file, "--output", out) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8"), newline="")))
    assert [r["prompt"] for r in rows] == PROMPTS
    assert list(rows[0]) == FIELDS
    assert {r["finish_reason"] for r in rows} <= ANSWERED
    assert [r["completion"] for r in rows] == expected_completions(fixture_lm, PROMPTS)
    assert all(1 <= int(r["new_tokens"]) <= 8 for r in rows)


def test_markdown_output(test_tokenizer_dir, prompts_file, tmp_path):
    out = tmp_path / "out.md"
    assert run_cli(test_tokenizer_dir, "--prompts_file", prompts_file, "--output", out) == 0
    lines = out.read_text("utf-8").splitlines()
    assert lines[0].startswith("| # | prompt | completion |")
    body = lines[2:]
    assert len(body) == len(PROMPTS)
    for number, (line, prompt) in enumerate(zip(body, PROMPTS, strict=True), 1):
        assert line.startswith(f"| {number} | {prompt} |")
        assert line.rstrip(" |").rsplit("| ", 1)[-1] in ANSWERED


def test_stdout_jsonl_when_piped(test_tokenizer_dir, prompts_file, capsys):
    rc = run_cli(test_tokenizer_dir, "--prompts_file", prompts_file)  # capsys: not a tty
    assert rc == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["prompt"] for r in records] == PROMPTS
    assert "[6/6]" in captured.err and "[6/6]" not in captured.out


def test_default_prompts_without_a_file(test_tokenizer_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    assert run_cli(test_tokenizer_dir, "--output", out, "--max_new_tokens", 2) == 0
    assert [r["prompt"] for r in read_jsonl(out)] == list(DEFAULT_PROMPTS)


# -- errors: one line on stderr, exit 1 ----------------------------------------------------


def test_missing_prompts_file(test_tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    rc = run_cli(test_tokenizer_dir, "--prompts_file", tmp_path / "nope.txt", "--output", out)
    assert rc == 1
    assert error_lines(capsys) == [f"swamla-tui: error: {tmp_path / 'nope.txt'}: no such file"]
    assert not out.exists()


def test_non_utf8_prompts_file(test_tokenizer_dir, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("first\ncaf\u00e9 au lait\n".encode("latin-1"))
    rc = run_cli(test_tokenizer_dir, "--prompts_file", bad, "--output", tmp_path / "o.jsonl")
    assert rc == 1
    lines = error_lines(capsys)
    assert len(lines) == 1
    assert lines[0].startswith("swamla-tui: error: ")
    assert "line 2 is not valid UTF-8" in lines[0]


def test_empty_prompts_file(test_tokenizer_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n", encoding="utf-8")
    rc = run_cli(test_tokenizer_dir, "--prompts_file", empty, "--output", tmp_path / "o.jsonl")
    assert rc == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and "no prompts" in lines[0]


@pytest.mark.parametrize("name", ["out.txt", "out"])
def test_unknown_output_format(test_tokenizer_dir, prompts_file, tmp_path, capsys, name):
    rc = run_cli(test_tokenizer_dir, "--prompts_file", prompts_file, "--output", tmp_path / name)
    assert rc == 1
    lines = error_lines(capsys)
    assert len(lines) == 1  # fails before the model loads: no progress lines
    assert lines[0].startswith("swamla-tui: error: ") and ".jsonl, .csv or .md" in lines[0]


def test_output_folder_missing(test_tokenizer_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "out.jsonl"
    assert run_cli(test_tokenizer_dir, "--prompts_file", prompts_file, "--output", out) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and "does not exist" in lines[0]


# -- determinism ---------------------------------------------------------------------------


def test_seeded_sampling_is_reproducible(test_tokenizer_dir, prompts_file, tmp_path):
    outs = []
    for name in ("a.jsonl", "b.jsonl"):
        out = tmp_path / name
        rc = run_cli(
            test_tokenizer_dir,
            "--prompts_file",
            prompts_file,
            "--output",
            out,
            "--temperature",
            "1.0",
            "--top_k",
            "0",
            "--top_p",
            "1.0",
            "--seed",
            "1234",
            "--max_new_tokens",
            "16",
        )
        assert rc == 0
        outs.append([r["completion"] for r in read_jsonl(out)])
    assert outs[0] == outs[1]


def test_greedy_batched_equals_alone(test_tokenizer_dir, prompts_file, tmp_path):
    outs = {}
    for size in (1, 6, 4):
        out = tmp_path / f"bs{size}.jsonl"
        rc = run_cli(
            test_tokenizer_dir,
            "--prompts_file",
            prompts_file,
            "--output",
            out,
            "--batch_size",
            size,
            "--max_new_tokens",
            "16",
        )
        assert rc == 0
        outs[size] = [(r["completion"], r["new_tokens"]) for r in read_jsonl(out)]
    assert outs[6] == outs[1]
    assert outs[4] == outs[1]


# -- long prompts --------------------------------------------------------------------------


def test_prompt_longer_than_max_length_is_flagged(test_tokenizer_dir, tmp_path, capsys):
    long_prompt = " ".join(["Once upon a time, in a land far away, there lived a model."] * 6)
    path = tmp_path / "long.txt"
    path.write_text(f"short one\n{long_prompt}\nanother short\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    rc = run_cli(test_tokenizer_dir, "--prompts_file", path, "--output", out, "--max_length", 32)
    assert rc == 0
    records = read_jsonl(out)
    assert [r["prompt"] for r in records] == ["short one", long_prompt, "another short"]
    assert all(r["finish_reason"] in ANSWERED for r in records)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "prompt 2 " in warnings[0] and "max_length 32" in warnings[0]


# -- the real command --------------------------------------------------------------------


def test_subprocess_headless_jsonl(test_tokenizer_dir, prompts_file, tmp_path):
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swamla_tui",
            *batch_argv(test_tokenizer_dir, "--prompts_file", prompts_file, "--output", out),
            *("--max_new_tokens", "4"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    records = read_jsonl(out)
    assert [r["prompt"] for r in records] == PROMPTS
    assert all(r["finish_reason"] in ANSWERED and r["new_tokens"] <= 4 for r in records)
    assert "[6/6]" in proc.stderr


def test_refusals_that_need_no_model_come_before_the_load(
    test_tokenizer_dir, prompts_file, tmp_path, capsys, monkeypatch
):
    """Issue 22 item 12: an output already complete, results of another prompts file and a
    stride longer than the window are answered before any model loads."""
    import swamla_tui.runtime.load

    out = tmp_path / "r.jsonl"
    assert run_cli(test_tokenizer_dir, "--prompts_file", prompts_file, "--output", out) == 0
    done = out.read_bytes()

    def no_load(*_a: object, **_k: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(swamla_tui.runtime.load, "load", no_load)
    capsys.readouterr()
    assert run_cli(test_tokenizer_dir, "--prompts_file", prompts_file, "--output", out) == 0
    assert error_lines(capsys) == [
        f"… {out}: all {len(PROMPTS)} prompts already have their results "
        "(--overwrite runs them again)"
    ]
    assert out.read_bytes() == done

    other = tmp_path / "other.txt"
    other.write_text("a prompt of another file\n", encoding="utf-8")
    assert run_cli(test_tokenizer_dir, "--prompts_file", other, "--output", out) == 1
    (line,) = error_lines(capsys)
    assert line.startswith("swamla-tui: error: ") and "not a prompt of this prompts file" in line
    assert out.read_bytes() == done

    text = tmp_path / "t.txt"
    text.write_text("some text to score\n", encoding="utf-8")
    argv = ["--checkpoint", str(FIXTURE_CKPT), "--perplexity", str(text), "--stride", "5000"]
    assert main(argv) == 2
    assert error_lines(capsys) == [
        "swamla-tui: error: --stride must be below the window (--max_length 2048), got 5000"
    ]
