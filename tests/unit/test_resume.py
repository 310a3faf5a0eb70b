"""Resumable, crash-safe headless runs (issue 14) and issue 11 item 9: rows are journalled
as they finish, a rerun skips them, SIGTERM and kill -9 lose only rows in flight, and a
prompt that cannot run fails alone."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from swamla_tui.base.errors import SwamlaError
from swamla_tui.base.params import SamplingParams
from swamla_tui.batch.job import BatchJob
from swamla_tui.batch.journal import Journal, journal_path, open_journal
from swamla_tui.cli.main import main
from swamla_tui.headless.run import run_headless
from tests.support.batch import (
    EchoBatchLM,
    OutOfVocabTokenizer,
    cli_argv,
    read_records,
    subprocess_env,
)
from tests.support.fakes import loader_for
from tests.support.helpers import ROOT

PROMPTS = [f"prompt number {i}" for i in range(7)]


def record(i: int, prompt: str | None = None, reason: str = "length") -> dict[str, object]:
    p = PROMPTS[i] if prompt is None else prompt
    return {"index": i, "prompt": p, "completion": p[::-1], "finish_reason": reason}


def job(output: Path | None, prompts: list[str] = PROMPTS, **kw: Any) -> BatchJob:
    return BatchJob(list(prompts), SamplingParams(temperature=0.0), output=str(output), **kw)


def run(job: BatchJob, lm: EchoBatchLM) -> tuple[int, str]:
    err = io.StringIO()
    rc = run_headless(job, loader_for(lm), err=err, out=io.StringIO())
    return rc, err.getvalue()


def interrupt_after(n: int, exc: type[BaseException] = KeyboardInterrupt) -> EchoBatchLM:
    def after(count: int) -> None:
        if count == n:
            raise exc

    return EchoBatchLM(after)


# -- the journal -----------------------------------------------------------------------------


def test_torn_last_line_is_cut_off_and_appending_continues(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    lines = [json.dumps(record(0)), json.dumps(record(3))]
    out.write_text("\n".join(lines) + '\n{"index": 5, "prompt": "prom', encoding="utf-8")
    journal, done = open_journal(out, PROMPTS, overwrite=False)
    assert sorted(done) == [0, 3]
    journal.append(record(5))
    journal.close()
    assert [r["index"] for r in read_records(out)] == [0, 3, 5]


def test_cancelled_lines_are_not_done(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps(record(1, reason="cancelled")) + "\n", encoding="utf-8")
    _, done = open_journal(out, PROMPTS, overwrite=False)
    assert done == {}


@pytest.mark.parametrize(
    "line, fragment",
    [
        (json.dumps(record(2, prompt="another prompt")), "line 2 (row 3) is not a prompt"),
        (json.dumps(record(0) | {"index": 99}), "line 2 (row 100) is not a prompt"),
        ("this is not json", "line 2 is not a JSON result"),
        (json.dumps({"prompt": PROMPTS[0]}), "line 2 has no row index"),
        ("[" * 100_000, "line 2 is not a JSON result"),
    ],
)
def test_results_of_another_run_are_refused(tmp_path: Path, line: str, fragment: str) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps(record(0)) + "\n" + line + "\n", encoding="utf-8")
    before = out.read_bytes()
    with pytest.raises(SwamlaError) as info:
        open_journal(out, PROMPTS, overwrite=False)
    message = str(info.value)
    assert fragment in message and "--overwrite" in message and "\n" not in message
    assert out.read_bytes() == before  # nothing touched
    journal, done = open_journal(out, PROMPTS, overwrite=True)
    journal.close()
    assert done == {} and out.read_bytes() == b""


def test_fsync_at_least_every_few_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[float] = []
    now = [100.0]
    monkeypatch.setattr("swamla_tui.batch.journal.os.fsync", lambda fd: syncs.append(now[0]))
    fh = open(tmp_path / "j.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - the journal owns it
    journal = Journal(tmp_path / "j.jsonl", fh, clock=lambda: now[0], sync_every=2.0)
    for t in (100.0, 100.5, 101.9, 102.1, 102.2, 105.0):
        now[0] = t
        journal.append(record(0))
        # flushed at once: a reader (or a crash) sees every row appended so far
        assert len((tmp_path / "j.jsonl").read_text().splitlines()) >= 1
    assert syncs == [100.0, 102.1, 105.0]
    now[0] = 105.5
    journal.append(record(1))
    journal.close()
    assert syncs == [100.0, 102.1, 105.0, 105.5]  # the last rows are synced at the end


def test_journal_of_csv_and_md_outputs_is_beside_them(tmp_path: Path) -> None:
    assert journal_path(tmp_path / "o.jsonl") == tmp_path / "o.jsonl"
    assert journal_path(tmp_path / "o.csv") == tmp_path / "o.csv.partial.jsonl"
    assert journal_path(tmp_path / "o.md") == tmp_path / "o.md.partial.jsonl"


# -- headless runs (fast fake model) -------------------------------------------------------


def test_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    rc, err = run(job(out), interrupt_after(3))
    assert rc == 130 and "interrupted: 3 of 7 prompts answered" in err
    assert sorted(r["index"] for r in read_records(out)) == [0, 1, 2]
    lm = EchoBatchLM()
    rc, err = run(job(out), lm)
    assert rc == 0
    assert "resuming: 3 of 7 done" in err.splitlines()
    assert lm.ran == PROMPTS[3:]  # the rows done are not run again
    records = read_records(out)
    assert [r["index"] for r in records] == list(range(7))  # rewritten in input order
    assert [r["completion"] for r in records] == [p[::-1] for p in PROMPTS]


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    lm = EchoBatchLM(lambda n: os.kill(os.getpid(), signal.SIGTERM) if n == 4 else None)
    previous = signal.getsignal(signal.SIGTERM)
    rc, err = run(job(out), lm)
    assert rc == 143
    assert "terminated: 4 of 7 prompts answered" in err and "run it again to resume" in err
    assert sorted(r["index"] for r in read_records(out)) == [0, 1, 2, 3]
    assert signal.getsignal(signal.SIGTERM) == previous  # handler restored


def test_overwrite_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    run(job(out), interrupt_after(2))
    lm = EchoBatchLM()
    rc, err = run(job(out, overwrite=True), lm)
    assert rc == 0 and "resuming" not in err
    assert lm.ran == PROMPTS
    assert len(read_records(out)) == 7


def test_finished_output_reruns_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    run(job(out), EchoBatchLM())
    first = out.read_text("utf-8")
    lm = EchoBatchLM()
    rc, err = run(job(out), lm)
    assert rc == 0 and "all 7 prompts already have their results" in err and lm.ran == []
    assert out.read_text("utf-8") == first


def test_other_prompts_are_refused_before_running(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    run(job(out), EchoBatchLM())
    lm = EchoBatchLM()
    with pytest.raises(SwamlaError, match="--overwrite"):
        run(job(out, prompts=[p.upper() for p in PROMPTS]), lm)
    assert lm.ran == []


@pytest.mark.parametrize("suffix", [".csv", ".md"])
def test_csv_and_md_are_written_at_the_end_from_the_journal(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    side = tmp_path / f"out{suffix}.partial.jsonl"
    rc, _ = run(job(out), interrupt_after(3))
    assert rc == 130
    assert len(read_records(side)) == 3  # the journal stays for the rerun
    assert out.exists()  # and the output holds the rows finished so far
    lm = EchoBatchLM()
    rc, err = run(job(out), lm)
    assert rc == 0 and "resuming: 3 of 7 done" in err and lm.ran == PROMPTS[3:]
    assert not side.exists()
    text = out.read_text("utf-8")
    assert all(p[::-1] in text for p in PROMPTS)


def test_a_failed_prompt_fails_alone_with_its_reason(tmp_path: Path) -> None:
    prompts = [*PROMPTS[:3], "a BAD prompt", *PROMPTS[3:]]
    out = tmp_path / "out.jsonl"
    rc, err = run(job(out, prompts=prompts), EchoBatchLM())
    assert rc == 1 and "7/8 prompts" in err and "1 failed" in err
    records = read_records(out)
    assert [r["finish_reason"] for r in records].count("error") == 1
    assert records[3]["error"] == "token id 999 is beyond it"
    assert all(r["error"] is None for i, r in enumerate(records) if i != 3)
    lm = EchoBatchLM()
    assert run(job(out, prompts=prompts), lm)[0] == 1 and lm.ran == []  # not retried


# -- the real model --------------------------------------------------------------------------


def test_prompt_beyond_the_vocabulary_fails_alone(fixture_lm, tmp_path: Path) -> None:
    from swamla_tui.runtime.loaded_model import LoadedModel

    lm = LoadedModel(
        fixture_lm.model,
        fixture_lm.config,
        OutOfVocabTokenizer(fixture_lm.tokenizer, fixture_lm.config.vocab_size),
        source="test",
        meta={},
        max_length=fixture_lm.max_length,
        stored_dtype="float32",
        notices=[],
    )
    prompts = ["Once upon a time", "a BIG prompt", "What is a list in Python?"]
    out = tmp_path / "out.jsonl"
    the_job = BatchJob(prompts, SamplingParams(temperature=0.0, max_new_tokens=4), output=str(out))
    rc = run_headless(the_job, loader_for(lm), err=io.StringIO(), out=io.StringIO())
    assert rc == 1
    records = read_records(out)
    assert records[1]["finish_reason"] == "error" and "vocabulary" in records[1]["error"]
    assert [records[i]["finish_reason"] for i in (0, 2)] == ["length", "length"]


def test_kill_9_mid_run_loses_only_rows_in_flight(
    test_tokenizer_dir: Path, fixture_lm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Enough rows, one at a time, that a fast machine is still mid-run when it is killed.
    n = 64
    prompts = [f"Once upon a time {i}," for i in range(n)]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    argv = cli_argv(test_tokenizer_dir, tmp_path / "p.txt", out, "--max_new_tokens", 8)
    child = subprocess.Popen(
        [sys.executable, "-m", "swamla_tui", *argv, "--batch_size", "1"],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and child.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.01)
        assert child.poll() is None, "the run ended before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    data = out.read_bytes()
    complete = data[: data.rfind(b"\n") + 1].decode("utf-8").splitlines()
    kept = [json.loads(line) for line in complete]  # every complete line is a valid row
    assert 3 <= len(kept) < len(prompts)
    with open(out, "ab") as fh:  # and a write torn by the kill is repaired by the rerun
        fh.write(b'{"index": 63, "prompt": "Once up')
    capsys.readouterr()
    assert main([*argv, "--batch_size", "16"]) == 0
    assert f"resuming: {len(kept)} of {n} done" in capsys.readouterr().err
    records = read_records(out)
    assert [r["prompt"] for r in records] == prompts
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    alone = {r.index: r.completion for r in fixture_lm.generate_batch(prompts, params)}
    assert [r["completion"] for r in records] == [alone[i] for i in range(n)]
    by_index = {r["index"]: r for r in records}
    assert all(by_index[k["index"]] == k for k in kept)  # kept as written, not run again
