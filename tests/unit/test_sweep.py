"""The checkpoint sweep (``--perplexity FILE --checkpoint RUN``): run folders and Hub-layout
folders built from copies of the reference fixture, the journal that makes it resumable,
the table and the plot."""

from __future__ import annotations

import gc
import io
import json
import shutil
import sys
import weakref
from typing import Any

import pytest

from swamla_tui.base.errors import SwamlaError
from swamla_tui.base.sweep import SweepJournal, SweepRow, plot_sweep, sweep_journal_path
from swamla_tui.checkpoint.selection import Selection
from swamla_tui.cli.main import main
from swamla_tui.runtime.perplexity import perplexity
from swamla_tui.runtime.sweep import run_sweep, sweep_candidates
from tests.support.helpers import FIXTURE_CKPT

TEXT = "You: Hello there, how are you today?\nAssistant: I am fine, thank you. " * 6
SETTINGS = {"source": "run", "max_length": 128}


@pytest.fixture
def text_file(tmp_path):
    f = tmp_path / "held_out.txt"
    f.write_text(TEXT, encoding="utf-8")
    return f


def _run_folder(tmp_path, names=("checkpoint_1000.pt", "checkpoint_2000.pt")):
    run = tmp_path / "run"
    run.mkdir()
    for n in names:
        shutil.copy(FIXTURE_CKPT, run / n)
    return run


def _hub_folder(tmp_path):
    hub = tmp_path / "hub"
    for n in ("checkpoint_tokens_2M_loss_3.0000", "checkpoint_tokens_1M_loss_3.2000"):
        (hub / n).mkdir(parents=True)
        shutil.copy(FIXTURE_CKPT, hub / n / "pytorch_model.bin")
    return hub


def _flags(source, tok, text, *more):
    return ["--checkpoint", str(source), "--tokenizer", str(tok), "--device", "cpu"] + [
        "--perplexity",
        str(text),
        *more,
    ]


def test_candidates_in_training_order_one_family(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    for n in ("checkpoint_2000.pt", "checkpoint_300.pt", "checkpoint_1000.pt"):
        (run / n).write_bytes(b"x")
    assert [c.path for c in sweep_candidates(str(run))] == [
        "checkpoint_300.pt",  # by step, not by string
        "checkpoint_1000.pt",
        "checkpoint_2000.pt",
    ]
    hub = tmp_path / "h"
    for n in (
        "base/checkpoint_tokens_2.00B_loss_2.1000",
        "base/checkpoint_tokens_999M_loss_2.3000",
        "instruct/checkpoint_pt2.00B_it50M_loss_1.9000",
    ):
        (hub / n).mkdir(parents=True)
        (hub / n / "pytorch_model.bin").write_bytes(b"x")
    assert [c.path for c in sweep_candidates(str(hub))] == [
        "base/checkpoint_tokens_999M_loss_2.3000",
        "base/checkpoint_tokens_2.00B_loss_2.1000",
    ]
    inst = sweep_candidates(str(hub), Selection(instruct=True))
    assert [c.path for c in inst] == ["instruct/checkpoint_pt2.00B_it50M_loss_1.9000"]
    assert sweep_candidates(str(FIXTURE_CKPT)) == []  # one file: no sweep


def test_run_folder_of_two_checkpoints(test_tokenizer_dir, tmp_path, text_file, capsys):
    run = _run_folder(tmp_path)
    single = tmp_path / "single.json"
    assert (
        main([*_flags(FIXTURE_CKPT, test_tokenizer_dir, text_file), "--output", str(single)]) == 0
    )
    capsys.readouterr()
    out = tmp_path / "sweep.json"
    assert main([*_flags(run, test_tokenizer_dir, text_file), "--output", str(out)]) == 0
    printed = capsys.readouterr()
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [r["checkpoint"] for r in rows] == ["checkpoint_1000.pt", "checkpoint_2000.pt"]
    assert [r["step"] for r in rows] == [1000, 2000]
    want = json.loads(single.read_text(encoding="utf-8"))[0]
    for r in rows:  # each copy of the fixture scores as the fixture itself
        assert r["loss"] == pytest.approx(want["loss"], abs=1e-9)
        assert r["tokens"] == want["tokens"]
        assert r["bits_per_byte"] == pytest.approx(want["bits_per_byte"], abs=1e-9)
    lines = printed.out.splitlines()
    assert lines[0].split()[:3] == ["checkpoint", "train", "tokens"]
    assert lines[1].startswith("checkpoint_1000.pt") and lines[2].startswith("checkpoint_2000.pt")
    assert "loss on the text" in printed.out
    assert "\x1b[" not in printed.out  # stdout is no terminal: a plain plot
    assert "[1/2] checkpoint_1000.pt" in printed.err and "[2/2] checkpoint_2000.pt" in printed.err


def test_hub_layout_folder_of_two(test_tokenizer_dir, tmp_path, text_file, capsys):
    hub = _hub_folder(tmp_path)
    out = tmp_path / "sweep.csv"
    assert main([*_flags(hub, test_tokenizer_dir, text_file), "--output", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("checkpoint,training_tokens,step,tokens,loss")
    assert [ln.split(",")[:2] for ln in lines[1:]] == [
        ["checkpoint_tokens_1M_loss_3.2000", "1000000.0"],
        ["checkpoint_tokens_2M_loss_3.0000", "2000000.0"],
    ]
    assert "training tokens" in capsys.readouterr().out  # the plot's x axis


def test_a_named_checkpoint_is_scored_alone(test_tokenizer_dir, tmp_path, text_file, capsys):
    run = _run_folder(tmp_path)
    argv = _flags(run, test_tokenizer_dir, text_file, "--hf_checkpoint", "checkpoint_1000.pt")
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["checkpoint", "tokens", "loss"] and len(table) == 2


def test_sweep_output_must_be_json_or_csv(test_tokenizer_dir, tmp_path, text_file, capsys):
    run = _run_folder(tmp_path)
    argv = _flags(run, test_tokenizer_dir, text_file, "--output", str(tmp_path / "o.md"))
    assert main(argv) == 1
    assert "a checkpoint sweep writes .json or .csv" in capsys.readouterr().err


def _fake_run(tmp_path, n=3):
    run = tmp_path / "fake"
    run.mkdir()
    for i in range(1, n + 1):
        (run / f"checkpoint_{i}000.pt").write_bytes(b"x")
    return sweep_candidates(str(run))


class _Proxy:
    """A loaded model for the sweep (delegates to a real one); weakly referable."""

    def __init__(self, lm):
        self._lm = lm

    def __getattr__(self, name):
        return getattr(self._lm, name)


def test_one_at_a_time_resumable_and_failures_skipped(fixture_lm, fixture_lm_b, tmp_path):
    cands = _fake_run(tmp_path)
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    alive: list[weakref.ref[Any]] = []
    calls: list[str] = []

    def loader_of(path):
        def load(_say):
            gc.collect()
            assert all(r() is None for r in alive), "the previous checkpoint is still loaded"
            calls.append(path)
            if path == "checkpoint_3000.pt":
                raise SwamlaError("broken file")
            lm = _Proxy(fixture_lm if path == "checkpoint_1000.pt" else fixture_lm_b)
            alive.append(weakref.ref(lm))
            return lm

        return load

    out = tmp_path / "s.json"
    err = io.StringIO()
    kw = {"settings": SETTINGS, "output": out, "out": io.StringIO(), "err": err}
    rows = run_sweep(loader_of, cands, f, **kw)
    assert [r.checkpoint for r in rows] == ["checkpoint_1000.pt", "checkpoint_2000.pt"]
    assert rows[0].loss == pytest.approx(perplexity(fixture_lm, TEXT).loss, abs=1e-9)
    assert rows[1].loss == pytest.approx(perplexity(fixture_lm_b, TEXT).loss, abs=1e-9)
    assert rows[0].loss != pytest.approx(rows[1].loss)
    assert "checkpoint_3000.pt: skipped (broken file)" in err.getvalue()
    # a rerun loads only what is not journalled: the failed one
    calls.clear()
    err = io.StringIO()
    rows2 = run_sweep(loader_of, cands, f, **{**kw, "err": err})
    assert calls == ["checkpoint_3000.pt"]
    assert [r.loss for r in rows2] == [r.loss for r in rows]
    assert "2 of 3 checkpoints already scored" in err.getvalue()
    # another text is refused, --overwrite starts over
    g = tmp_path / "other.txt"
    g.write_text(TEXT + "more", encoding="utf-8")
    with pytest.raises(SwamlaError, match="another text or other settings.*--overwrite"):
        run_sweep(loader_of, cands, g, **kw)
    calls.clear()
    run_sweep(loader_of, cands, g, overwrite=True, **kw)
    assert calls == ["checkpoint_1000.pt", "checkpoint_2000.pt", "checkpoint_3000.pt"]


def test_journal_cuts_a_torn_line_and_refuses_garbage(tmp_path):
    path = sweep_journal_path(tmp_path / "o.json")
    row = SweepRow("checkpoint_1.pt", None, 1, 10, 2.0, 7.39, 1.5, 0.1)
    SweepJournal(path, SETTINGS).append(row)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"settings": {"sou')  # killed inside a write
    j = SweepJournal(path, SETTINGS)
    assert list(j.done) == ["checkpoint_1.pt"] and j.done["checkpoint_1.pt"] == row
    assert path.read_text(encoding="utf-8").count("\n") == 1
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(SwamlaError, match="line 1 is not a row of a checkpoint sweep"):
        SweepJournal(path, SETTINGS)


def _rows(losses, tokens):
    return [
        SweepRow(f"c{i}", t, None, 100, loss, 2.0, 1.0, 0.1)
        for i, (loss, t) in enumerate(zip(losses, tokens, strict=True))
    ]


def test_plain_plot_without_plotext(monkeypatch):
    monkeypatch.setitem(sys.modules, "plotext", None)  # import fails: the fallback
    text = plot_sweep(_rows([3.0, 2.5, 2.0], [1e6, 2e6, 4e6]), width=40, height=5)
    lines = text.splitlines()
    assert lines[0] == "loss on the text"
    grid = [ln.split("|", 1)[1] for ln in lines[1:6]]
    assert grid[0] == "*"  # highest loss, fewest tokens: top left
    assert grid[4].endswith("*") and len(grid[4]) == 40 - len("3.0000") - 2  # last: bottom right
    assert grid[2].index("*") == round((1 / 3) * (len(grid[4]) - 1))  # 2M of 1M..4M
    assert lines[-2].split() == ["1M", "4M"] and lines[-1].strip() == "training tokens"


def test_plotext_plot_has_the_points_and_labels():
    pytest.importorskip("plotext")
    text = plot_sweep(_rows([3.0, 2.0], [1e6, 2e6]), width=60, height=12)
    assert "loss on the text" in text and "training tokens" in text
    assert "1M" in text and "2M" in text and text.count("●") == 2 and "\x1b[" not in text


def test_cli_rerun_resumes_however_the_run_is_spelled(
    test_tokenizer_dir, tmp_path, text_file, capsys
):
    import os

    run = _run_folder(tmp_path)
    out = tmp_path / "curve.json"
    assert main([*_flags(run, test_tokenizer_dir, text_file), "--output", str(out)]) == 0
    first = json.loads(out.read_text(encoding="utf-8"))
    capsys.readouterr()
    rel = os.path.relpath(run)
    assert main([*_flags(rel, test_tokenizer_dir, text_file), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "2 of 2 checkpoints already scored" in err and "[1/2]" not in err
    assert json.loads(out.read_text(encoding="utf-8")) == first
    argv = [*_flags(run, test_tokenizer_dir, text_file), "--output", str(out), "--stride", "8"]
    assert main(argv) == 1  # other settings: refused in one line
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--overwrite" in err
    assert main([*argv, "--overwrite"]) == 0
    assert "[1/2] checkpoint_1000.pt" in capsys.readouterr().err


def test_hub_repo_from_the_offline_cache(test_tokenizer_dir, tmp_path, text_file, monkeypatch):
    """`--hf_model user/repo`: listed and loaded folder by folder from the HF cache."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--user--repo"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    for n in ("checkpoint_tokens_1.5M_loss_1.9876", "checkpoint_tokens_500k_loss_2.3456"):
        (snap / n).mkdir(parents=True)
        shutil.copy(FIXTURE_CKPT, snap / n / "pytorch_model.bin")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # "user/repo" must not exist as a local path
    out = tmp_path / "curve.json"
    argv = ["--hf_model", "user/repo", "--tokenizer", str(test_tokenizer_dir), "--device", "cpu"]
    assert main([*argv, "--perplexity", str(text_file), "--output", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [(r["checkpoint"], r["training_tokens"]) for r in rows] == [
        ("checkpoint_tokens_500k_loss_2.3456", 500_000.0),
        ("checkpoint_tokens_1.5M_loss_1.9876", 1_500_000.0),
    ]


def test_one_file_keeps_its_json_output_whatever_the_name(test_tokenizer_dir, tmp_path, text_file):
    out = tmp_path / "result.txt"  # not a sweep: the usual JSON, any name
    assert main([*_flags(FIXTURE_CKPT, test_tokenizer_dir, text_file), "--output", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))[0]["tokens"] > 0
