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

from swamla_tui.base.timings import TIMING_FIELDS
from swamla_tui.batch.prompts import DEFAULT_PROMPTS
from swamla_tui.cli.main import main
from tests.support.helpers import FIXTURE_CKPT, ROOT, process_running

PROMPTS = [
    "Once upon a time, in a land far away,",
    "What is a list in Python?",
    "You: Hello there, how are you today?\u00a0é 日本",
    "The quick brown fox jumps over the lazy dog.",
    "Numbers 0123456789",
    "science",
]
ANSWERED = {"length", "stop", "eos"}
FIELDS = ["index", "prompt", "completion", "new_tokens", "seconds", "finish_reason", "error",
          *TIMING_FIELDS]  # fmt: skip


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
    # the per-row timings: counts are the row's own, times are measured
    assert all(r["generated_tokens"] == r["new_tokens"] for r in records)
    assert all(r["prompt_tokens"] == len(fixture_lm.encode(r["prompt"])) for r in records)
    assert all(0 <= r["prefill_s"] <= r["ttft_s"] <= r["seconds"] + 1e-3 for r in records)
    assert all(r["decode_tok_s"] >= 0 and r["cached_tokens"] == 0 for r in records)
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


# -- special outputs, one run per output, huge lines (issue 21 items 6, 8, 9) --------------


def _never_load(_say):
    raise AssertionError("the model must not load")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", ["out.jsonl", "out.csv.partial.jsonl"])
def test_fifo_output_or_journal_is_refused_before_loading(tmp_path, name):
    from swamla_tui.base.errors import SwamlaError
    from swamla_tui.base.params import SamplingParams
    from swamla_tui.batch.job import BatchJob
    from swamla_tui.headless.run import run_headless

    os.mkfifo(tmp_path / name)
    output = tmp_path / name.removesuffix(".partial.jsonl")
    job = BatchJob(["a"], SamplingParams(), output=str(output))
    with pytest.raises(SwamlaError, match="FIFO"):
        run_headless(job, _never_load, err=io.StringIO(), out=io.StringIO())


def test_a_second_run_on_the_same_output_refuses_at_once(tmp_path):
    from swamla_tui.base.errors import SwamlaError
    from swamla_tui.base.params import SamplingParams
    from swamla_tui.batch.job import BatchJob
    from swamla_tui.headless.run import output_lock, run_headless
    from tests.support.batch import EchoBatchLM

    out = tmp_path / "out.jsonl"
    job = BatchJob(["a", "b"], SamplingParams(), output=str(out))
    with output_lock(str(out)):
        assert (tmp_path / ".out.jsonl.lock").exists()
        with pytest.raises(SwamlaError, match="another swamla-tui run is writing it"):
            run_headless(job, _never_load, err=io.StringIO(), out=io.StringIO())
    assert not (tmp_path / ".out.jsonl.lock").exists()  # released and removed

    def echo(_say: Any) -> Any:
        return EchoBatchLM()  # a BatchModel: enough for a batch run

    rc = run_headless(job, echo, err=io.StringIO(), out=io.StringIO())
    assert rc == 0 and [r["completion"] for r in read_jsonl(out)] == ["a", "b"]
    assert not (tmp_path / ".out.jsonl.lock").exists()


def test_the_lock_holds_across_processes(tmp_path):
    """A real second process: it refuses while the first holds the output."""
    out = tmp_path / "out.csv"
    code = (
        "import sys, time\n"
        "from swamla_tui.headless.run import output_lock\n"
        f"with output_lock({str(out)!r}):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    from swamla_tui.base.errors import SwamlaError
    from swamla_tui.headless.run import output_lock

    refused = pytest.raises(SwamlaError, match="another swamla-tui run")
    with process_running(code, "held"), refused, output_lock(str(out)):
        pass
    with output_lock(str(out)):  # free again once the holder ended
        pass


def test_a_50mb_single_line_prompt_is_cut_not_tokenized_whole(test_tokenizer_dir, tmp_path):
    """Before: the whole line went to the tokenizer (SIGABRT at 50 MB, 27.5 s and 2.5 GB
    at 10 MB). Now only its tail is tokenized, under a memory limit, in seconds."""
    from tests.support.hostile import run_limited

    path = tmp_path / "huge.txt"
    path.write_bytes(b"short one\n" + b"word " * 10_000_000 + b"the end\n")
    out = tmp_path / "out.jsonl"
    argv = batch_argv(
        test_tokenizer_dir, "--prompts_file", path, "--output", out, "--max_length", 32
    )
    result = run_limited(
        f"""
        from swamla_tui.cli.main import main
        rc = main({argv!r})
        print("RC", rc)
        """,
        timeout=120,
        budget=1536 * 2**20,
        preload=("torch", "swamla_tui.runtime.load", "transformers"),
    )
    assert result.returncode == 0 and "RC 0" in result.stdout, result.stderr[-2000:]
    records = read_jsonl(out)
    assert [r["finish_reason"] in ANSWERED for r in records] == [True, True]
    assert "prompt 2 (50,000,007 characters) is longer than max_length 32" in result.stderr


def test_expert_stats_of_a_batch_run(tmp_path):
    """``--expert-stats`` with ``--logprobs``: the summary counts every generated token's
    routing once (the JSONL's ``logprobs`` entries are those tokens)."""
    import io
    import json

    import swamla_tui
    from swamla_tui.base.params import SamplingParams
    from swamla_tui.batch.job import BatchJob
    from swamla_tui.headless.run import run_headless
    from tests.support.helpers import V2_CKPT, V2_TOKENIZER

    lm = swamla_tui.load(V2_CKPT, tokenizer=V2_TOKENIZER)
    params = SamplingParams(temperature=0.8, top_k=20, seed=2, max_new_tokens=6)
    out, stats = tmp_path / "o.jsonl", tmp_path / "s.json"
    job = BatchJob(["Hello there", "Once upon a time", "A list is"], params, 2, str(out))
    err = io.StringIO()
    assert run_headless(job, lambda p: lm, err=err, logprobs=2, expert_stats=str(stats)) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    n = sum(len(r["logprobs"]) for r in rows)
    data = json.loads(stats.read_text())
    assert data["source"] == "batch" and data["tokens"] == n > 0
    for layer in data["layers"]:
        assert sum(layer["tokens_per_expert"]) == 8 * n
        assert layer["never_chosen"] == [
            e for e, c in enumerate(layer["tokens_per_expert"]) if c == 0
        ]
    assert "batch: " in err.getvalue()


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
