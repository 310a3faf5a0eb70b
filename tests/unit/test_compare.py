"""A/B: two models on the same prompts (compare.py, headless_compare.py, memcheck.py, CLI)."""

from __future__ import annotations

import csv
import io
import json
import threading
from types import SimpleNamespace

import pytest

from swamla_tui.base.params import SamplingParams
from swamla_tui.batch.compare import (
    COMPARE_FIELDS,
    CompareError,
    Side,
    check_compatible,
    compare_rows,
    run_compare,
)
from swamla_tui.batch.job import BatchJob, PromptFinished
from swamla_tui.batch.results import render_results
from swamla_tui.cli.main import main
from swamla_tui.headless.compare import run_headless_compare
from swamla_tui.runtime.memcheck import MemoryCheckError, check_second_fits, model_bytes
from tests.support.helpers import FIXTURE_CKPT

PROMPTS = ["Hello there", "Once upon a time", "The quick brown fox", "What is a list?", "Hi"]


def _ords(text: str) -> list[int]:
    return [ord(c) for c in text]


def _model(vocab: int, encode=_ords) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(vocab_size=vocab), encode=encode)


def test_different_vocab_is_refused_in_one_line():
    with pytest.raises(CompareError) as e:
        check_compatible(_model(512), _model(50304), names=("A (a.pt)", "B (b.pt)"))
    assert (
        str(e.value) == "cannot compare: A (a.pt) has a vocabulary of 512 tokens, B (b.pt) 50,304"
    )


def test_different_tokenizer_is_refused_in_one_line():
    other = _model(512, encode=lambda t: [ord(c) + 1 for c in t])
    with pytest.raises(CompareError, match="use different tokenizers") as e:
        check_compatible(_model(512), other)
    assert "\n" not in str(e.value)
    check_compatible(_model(512), _model(512))  # same: no error


def test_same_seed_gives_each_model_the_same_settings(fixture_lm):
    params = SamplingParams(temperature=0.9, top_k=20, seed=123, max_new_tokens=6)
    rows = compare_rows(PROMPTS)
    sides = []
    for side, event in run_compare(
        fixture_lm, fixture_lm, PROMPTS, params=params, batch_size=2, cancel=threading.Event()
    ):
        sides.append(side)
        if isinstance(event, PromptFinished):
            rows[event.index].side(side).apply(event.outcome)
    assert all(r.has_result for r in rows)
    # the same model with the same seed and settings: the same completions on both sides
    assert [r.a.completion for r in rows] == [r.b.completion for r in rows]
    assert any(r.a.completion for r in rows)
    # chunks alternate: A's chunk, then B's same chunk
    assert sides[:2] == ["a", "a"] and "b" in sides[:6]


def test_records_and_exports_have_both_columns(fixture_lm):
    rows = compare_rows(["p1", "p|2"])
    for r, (ca, cb) in zip(rows, [("x", "y"), ("line\nbreak", "z")], strict=True):
        pairs: list[tuple[Side, str]] = [("a", ca), ("b", cb)]
        for side, text in pairs:
            r.side(side).apply(
                SimpleNamespace(
                    completion=text,
                    new_tokens=3,
                    seconds=0.5,
                    finish_reason="length",
                    truncated=False,
                )
            )
    records = [r.record() for r in reversed(rows)]  # out of order: index restores it
    jsonl = [
        json.loads(line) for line in render_results(records, "jsonl", COMPARE_FIELDS).splitlines()
    ]
    assert list(jsonl[0]) == list(COMPARE_FIELDS)
    assert [(j["completion_a"], j["completion_b"]) for j in jsonl] == [
        ("x", "y"),
        ("line\nbreak", "z"),
    ]
    table = list(csv.DictReader(io.StringIO(render_results(records, "csv", COMPARE_FIELDS))))
    assert table[1]["completion_a"] == "line\nbreak" and table[1]["prompt"] == "p|2"
    md = render_results(records, "md", COMPARE_FIELDS).splitlines()
    assert md[0] == "| # | " + " | ".join(f.replace("_", " ") for f in COMPARE_FIELDS) + " |"
    assert "p\\|2" in md[3] and "line<br>break" in md[3]


def test_headless_compare_writes_both_columns(fixture_lm, tmp_path):
    out = tmp_path / "ab.jsonl"
    job = BatchJob(PROMPTS[:3], SamplingParams(seed=5, max_new_tokens=5), 2, str(out))
    seen: list[str] = []

    def check(first, source):
        seen.append(source)

    err = io.StringIO()
    rc = run_headless_compare(
        job,
        lambda p: fixture_lm,
        lambda p: fixture_lm,
        before_second=check,
        compare_source="b.pt",
        err=err,
    )
    assert rc == 0 and seen == ["b.pt"]
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in recs] == PROMPTS[:3]
    assert all(r["completion_a"] == r["completion_b"] for r in recs)
    assert "Done: 3/3 prompts compared" in err.getvalue()


def test_second_model_too_big_is_refused_before_it_loads(fixture_lm, monkeypatch):
    import swamla_tui.runtime.memcheck as memcheck

    monkeypatch.setattr(memcheck, "available_bytes", lambda device: model_bytes(fixture_lm))
    with pytest.raises(MemoryCheckError, match="cannot compare: b.pt needs about"):
        check_second_fits(fixture_lm, "b.pt")

    def never(progress):
        raise AssertionError("loaded the second model")

    job = BatchJob(["x"], SamplingParams(max_new_tokens=2))
    with pytest.raises(MemoryCheckError):
        run_headless_compare(
            job,
            lambda p: fixture_lm,
            never,
            before_second=check_second_fits,
            err=io.StringIO(),
            out=io.StringIO(),
        )
    monkeypatch.setattr(memcheck, "available_bytes", lambda device: 10 * model_bytes(fixture_lm))
    check_second_fits(fixture_lm, "b.pt")


def test_cli_batch_compare_end_to_end(test_tokenizer_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello there\nOnce upon a time\n", encoding="utf-8")
    out = tmp_path / "ab.csv"
    argv = ["--checkpoint", str(FIXTURE_CKPT), "--tokenizer", str(test_tokenizer_dir)]
    argv += ["--mode", "batch", "--prompts_file", str(prompts), "--compare", str(FIXTURE_CKPT)]
    argv += ["--seed", "3", "--max_new_tokens", "4", "--output", str(out), "--device", "cpu"]
    assert main(argv) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["prompt"] for r in rows] == ["Hello there", "Once upon a time"]
    assert list(rows[0]) == list(COMPARE_FIELDS)
    assert "… B: " in capsys.readouterr().err


def test_cli_compare_with_a_different_vocab_is_one_line(test_tokenizer_dir, tmp_path, capsys):
    from swamla_tui.cli.main import DEMO_DIR

    out = tmp_path / "o.jsonl"
    argv = ["--checkpoint", str(FIXTURE_CKPT), "--tokenizer", str(test_tokenizer_dir)]
    argv += ["--mode", "batch", "--compare", str(DEMO_DIR), "--output", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("swamla-tui: error: cannot compare: A (")
    assert err.endswith(
        "has a vocabulary of 512 tokens, B (" + str(DEMO_DIR / "checkpoint_demo.pt") + ") 1,536"
    )
    assert not out.exists()


@pytest.mark.parametrize("mode", ["chat", "batch"])
def test_cli_compare_on_a_screen_hands_the_app_a_second_loader(mode, monkeypatch):
    import swamla_tui.ui.app as app_module

    seen = {}

    def fake_run_app(loader, options):
        seen["options"] = options
        return 0

    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.setattr(app_module, "run_app", fake_run_app)
    assert main(["--mode", mode, "--compare", str(FIXTURE_CKPT)]) == 0
    options = seen["options"]
    assert options.mode == mode and options.compare == str(FIXTURE_CKPT)
    assert callable(options.load_second)


def test_run_compare_takes_an_order_and_reads_the_batch_size_per_chunk():
    from swamla_tui.batch.job import ChunkStarted
    from tests.support.batch import EchoBatchLM

    a, b = EchoBatchLM(), EchoBatchLM()
    sizes = iter([2, 1, 1])
    started = [
        (side, event.indices)
        for side, event in run_compare(
            a,
            b,
            PROMPTS,
            [4, 0, 2, 3],
            params=SamplingParams(),
            batch_size=lambda: next(sizes),
            cancel=threading.Event(),
        )
        if isinstance(event, ChunkStarted)
    ]
    assert started == [
        ("a", (4, 0)),
        ("b", (4, 0)),
        ("a", (2,)),
        ("b", (2,)),
        ("a", (3,)),
        ("b", (3,)),
    ]
    assert a.ran == b.ran == [PROMPTS[i] for i in (4, 0, 2, 3)]


def test_a_failed_side_exports_its_error_as_its_completion():
    from swamla_tui.batch.compare import compare_record
    from swamla_tui.batch.job import BatchRow
    from tests.support.fakes import Outcome

    a, b = BatchRow(0, "p"), BatchRow(0, "p")
    a.apply(Outcome(0, "p", "fine", 2, 0.1, "length"))
    b.apply(Outcome(0, "p", "", 0, 0.0, "error", error="token id 999 is beyond it"))
    rec = compare_record(a, b)
    assert rec["completion_a"] == "fine"
    assert rec["completion_b"] == "error: token id 999 is beyond it"
    assert rec["finish_reason_b"] == "error" and set(COMPARE_FIELDS) <= set(rec)


def test_a_compare_run_takes_the_output_lock(tmp_path):
    """As a plain batch run (issue 21 item 9): a second run on the same --output refuses
    before loading either model."""
    from swamla_tui.base.errors import SwamlaError
    from swamla_tui.headless.run import output_lock

    out = tmp_path / "ab.jsonl"
    job = BatchJob(PROMPTS[:1], SamplingParams(max_new_tokens=2), 1, str(out))

    def never(progress):
        raise AssertionError("a model loaded")

    with output_lock(str(out)), pytest.raises(SwamlaError, match="another swamla-tui run"):
        run_headless_compare(job, never, never, err=io.StringIO(), out=io.StringIO())
