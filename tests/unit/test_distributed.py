"""torchrun batch runs (issue 14): 2 CPU ranks over gloo on the reference fixture give the
same output as one process at temperature 0, and resume works across ranks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import cast

import pytest

from swamla_tui.base.errors import SwamlaError
from swamla_tui.cli.main import main
from swamla_tui.headless.distributed import rank_device, rank_info, torchrun_world
from tests.support.batch import (
    cli_argv,
    free_port,
    read_records,
    subprocess_env,
    torchrun_cmd,
    without_timing,
)
from tests.support.helpers import ROOT

PROMPTS = [
    "Once upon a time, in a land far away,",
    "What is a list in Python?",
    "The quick brown fox jumps over the lazy dog.",
    "Numbers 0123456789",
    "science",
    "You: Hello there, how are you today?",
    "magic",
]


def test_rank_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_world() == 1 and rank_info() is None
    assert rank_device("cuda") == "cuda"  # one process: the flag as given
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = rank_info()
    assert info is not None and (info.rank, info.world, info.local_rank) == (3, 4, 1)
    assert rank_device("cuda") == "cuda:1"
    assert rank_device("cpu") == "cpu"
    assert rank_device("cuda:0") == "cuda:0"  # an explicit device is kept
    monkeypatch.setenv("RANK", "9")
    with pytest.raises(SwamlaError, match="RANK"):
        rank_info()


def _torchrun(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        torchrun_cmd(2, free_port(), argv),
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_gloo_ranks_resume_and_equal_one_process(
    test_tokenizer_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    flags = ("--max_new_tokens", 6, "--batch_size", 2)
    single, merged = tmp_path / "single.jsonl", tmp_path / "merged.jsonl"
    assert main(cli_argv(test_tokenizer_dir, prompts, single, *flags)) == 0
    capsys.readouterr()

    # Two rows (and a torn third line) are left from an earlier run: rank 0 resumes,
    # the two ranks share the other five, and rank 0 merges them in input order.
    lines = single.read_text("utf-8").splitlines(keepends=True)
    merged.write_text("".join(lines[:2]) + lines[2][:25], encoding="utf-8")
    done = _torchrun(cli_argv(test_tokenizer_dir, prompts, merged, *flags))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming: 2 of 7 done" in done.stderr
    assert "Running 5 prompts" in done.stderr and "2 ranks (gloo), about 3 each" in done.stderr
    assert done.stderr.count("… Done: 7/7 prompts") == 1  # one progress display: rank 0's
    assert without_timing(read_records(merged)) == without_timing(read_records(single))


def test_rank_worker_hands_over_final_rows_and_its_failure() -> None:
    from swamla_tui.base.params import SamplingParams
    from swamla_tui.batch.job import BatchJob
    from swamla_tui.headless.distributed import _Worker
    from swamla_tui.protocols import Model
    from tests.support.batch import EchoBatchLM

    # a rank's worker only runs batches: the batch-only fake stands in for the whole model
    prompts = ["a", "b BAD", "c", "d", "e"]
    job = BatchJob(prompts, SamplingParams(temperature=0.0))
    worker = _Worker(cast(Model, EchoBatchLM()), job, [0, 1, 3], batch_size=2)
    worker.start()
    got: list[dict[str, object]] = []
    while not (worker.done.is_set() and worker.results.empty()):
        got += worker.collect(0.05)
    assert [r["index"] for r in got] == [0, 1, 3]  # its shard only, failures included
    assert got[1]["finish_reason"] == "error" and got[1]["error"]
    assert worker.error is None

    def boom(count: int) -> None:
        raise RuntimeError("CUDA out of memory")

    failing = _Worker(cast(Model, EchoBatchLM(boom)), job, [2, 4], batch_size=1)
    failing.start()
    assert failing.done.wait(10)
    assert failing.error == "RuntimeError: CUDA out of memory"
