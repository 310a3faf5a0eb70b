"""--eval: lm-evaluation-harness tasks on our engine, item by item against lm-eval's own `hf`
model on the --export of the same checkpoint (local tasks in tests/fixtures/eval/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import swamla_tui
from swamla_tui.cli.main import main
from swamla_tui.evaluate.run import TaskSpecError, evaluate, parse_tasks
from swamla_tui.runtime.hf_export import export_checkpoint
from tests.support.g7 import G7_CKPT, G7_TOKENIZER
from tests.support.helpers import FIXTURE_CKPT, FIXTURES, ROOT, V2_CKPT, V2_TOKENIZER

pytest.importorskip("lm_eval")

TASKS = FIXTURES / "eval"
TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _offline_datasets(tmp_path_factory):
    """The local JSON files only (the Hub is offline: tests/conftest.py), and a datasets
    cache of the module's own instead of ~/.cache."""
    import datasets.config

    cache = tmp_path_factory.mktemp("datasets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_DATASETS_CACHE", str(cache))
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
        yield


@pytest.fixture(scope="module")
def ours(fixture_lm):
    tasks, named = parse_tasks(str(TASKS))
    return evaluate(fixture_lm, tasks, named=named, log_samples=True)


@pytest.fixture(scope="module")
def hf_subprocess(fixture_lm, tmp_path_factory):
    """lm-eval's `hf` model on the export, in a fresh process (tests/support/lm_eval_hf_run.py)."""
    tmp = tmp_path_factory.mktemp("hf_eval")
    export = export_checkpoint(fixture_lm, tmp / "export")
    env = dict(
        os.environ,
        HF_MODULES_CACHE=str(tmp / "modules"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp / "datasets"),
        PYTHONPATH=str(ROOT),
    )
    out = tmp / "hf.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "lm_eval_hf_run.py"), str(export),
         str(TASKS), str(fixture_lm.max_length), str(out)],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _flat(resps) -> list[Any]:
    """One value per request of an item: a float, a (float, bool) pair or a string."""
    return [r[0] for r in resps]


def test_each_item_equals_lm_evals_hf_model_on_the_export(ours, hf_subprocess):
    kinds = set()
    for task, samples in ours["samples"].items():
        kinds.add(ours["configs"][task]["output_type"])
        assert len(samples) == len(hf_subprocess["samples"][task]) > 0
        for s in samples:
            mine, hf = _flat(s["resps"]), _flat(hf_subprocess["samples"][task][str(s["doc_id"])])
            assert len(mine) == len(hf)
            for a, b in zip(mine, hf, strict=True):
                if isinstance(a, str):
                    assert a == b  # greedy text, cut at the stop strings
                elif isinstance(a, tuple):
                    assert a[0] == pytest.approx(b[0], abs=TOL) and a[1] == b[1]
                else:  # a whole text: float32 sums over hundreds of tokens on both sides
                    assert a == pytest.approx(b, abs=TOL, rel=1e-6)
    assert kinds == {"multiple_choice", "loglikelihood_rolling", "generate_until"}


def test_metrics_equal_lm_evals(ours, hf_subprocess):
    for task, metrics in hf_subprocess["results"].items():
        for name, value in metrics.items():
            if isinstance(value, float) and "stderr" not in name:
                assert ours["results"][task][name] == pytest.approx(value, rel=1e-5), name


def test_rolling_items_are_the_perplexity_rolling_mode(ours, fixture_lm):
    from swamla_tui.runtime.perplexity import perplexity

    rows = [json.loads(line) for line in (TASKS / "texts.jsonl").read_text().splitlines()]
    got = {s["doc_id"]: _flat(s["resps"])[0] for s in ours["samples"]["swamla_local_rolling"]}
    long = 0
    for i, row in enumerate(rows):
        r = perplexity(fixture_lm, row["text"], windows="rolling")
        long += r.tokens > fixture_lm.max_length
        assert -r.loss * r.tokens == pytest.approx(got[i], rel=1e-6)
    assert long >= 2  # texts longer than the context: several windows


@pytest.mark.parametrize("kind", ["v2", "g7"])
def test_loglikelihood_is_the_plain_forward_for_other_formats(kind):
    """G1-G6 (the v2 fixture) and G7: each choice's log-likelihood from a plain forward."""
    from lm_eval.api.instance import Instance

    from swamla_tui.evaluate.lm import SwamlaLM

    ckpt, tok = (V2_CKPT, V2_TOKENIZER) if kind == "v2" else (G7_CKPT, G7_TOKENIZER)
    lm = swamla_tui.load(ckpt, tokenizer=tok)
    model = SwamlaLM(lm, batch_size=2)
    pairs = [("The quick brown", " fox"), ("Once upon a time", " there lived"), ("", "Hello")]
    reqs = [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]
    got = model.loglikelihood(reqs)
    for (ctx, cont), (ll, _) in zip(pairs, got, strict=True):
        c = model.tok_encode(ctx) if ctx else [model.prefix_token_id]
        whole = model.tok_encode(ctx + cont) if ctx else c + model.tok_encode(cont)
        logp = torch.log_softmax(lm.logits(torch.tensor([whole[:-1]]))[0], dim=-1)
        want = sum(float(logp[t - 1, whole[t]]) for t in range(len(c), len(whole)))
        assert ll == pytest.approx(want, abs=TOL)
    text = "The quick brown fox jumps over the lazy dog. " * 40
    (rolling,) = model.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    assert rolling < 0 and len(model.tok_encode(text)) > lm.max_length


# ------------------------------------------------------------------------------ task specs
def test_parse_tasks_reads_yaml_files_and_folders():
    tasks, named = parse_tasks(f"{TASKS / 'local_mc.yaml'}, swamla_builtin_name")
    assert named and tasks[1] == "swamla_builtin_name"
    assert isinstance(tasks[0], dict) and tasks[0]["task"] == "swamla_local_mc"
    files = tasks[0]["dataset_kwargs"]["data_files"]["test"]
    assert Path(files) == TASKS / "mc.jsonl"  # relative to the YAML, not to the cwd
    tasks, named = parse_tasks(str(TASKS))
    assert not named and len(tasks) == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: "", "no task given"),
        (lambda d: str(d / "missing.yaml"), "no such file or folder"),
        (lambda d: str(d), "no task YAML in this folder"),
        (lambda d: (d / "a.txt").write_text("x") and str(d / "a.txt"), "not a task YAML"),
        (lambda d: (d / "b.yaml").write_text("x: 1\n") and str(d / "b.yaml"), "no 'task' key"),
        (lambda d: (d / "c.yaml").write_text("task: [\n") and str(d / "c.yaml"), "cannot read"),
    ],
)
def test_bad_task_spec_is_one_line(tmp_path, make, message):
    with pytest.raises(TaskSpecError, match=message) as e:
        parse_tasks(make(tmp_path))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------ the CLI
def _flags(tok, ckpt=FIXTURE_CKPT) -> list[str]:
    return ["--checkpoint", str(ckpt), "--tokenizer", str(tok), "--device", "cpu"]


def test_cli_eval_writes_lm_evals_layout(test_tokenizer_dir, tmp_path, capsys):
    folder = tmp_path / "lm_eval_out"
    argv = [*_flags(test_tokenizer_dir), "--eval", str(TASKS / "local_mc.yaml")]
    assert main([*argv, "--output", str(folder)]) == 0
    table = capsys.readouterr().out
    assert "swamla_local_mc" in table and "acc" in table
    (written,) = folder.rglob("results_*.json")
    assert list(folder.rglob("samples_swamla_local_mc_*.jsonl"))
    data = json.loads(written.read_text())
    assert set(data["results"]["swamla_local_mc"]) >= {"acc,none", "acc_norm,none"}
    assert data["config"]["model"] == "swamla-tui"


def test_cli_eval_over_a_run_folder_scores_each_checkpoint(test_tokenizer_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for n in ("checkpoint_1000.pt", "checkpoint_2000.pt"):
        shutil.copy(FIXTURE_CKPT, run / n)
    argv = [*_flags(test_tokenizer_dir, run), "--eval", str(TASKS / "local_mc.yaml")]
    out = tmp_path / "all.json"
    assert main([*argv, "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data) == 2 and all("checkpoint_" in k for k in data)
    assert all(v["config"]["model"] == "swamla-tui" and "samples" not in v for v in data.values())
    accs = [v["results"]["swamla_local_mc"]["acc,none"] for v in data.values()]
    assert accs[0] == accs[1]  # the same weights twice
    summary = capsys.readouterr().out.splitlines()[-3:]  # one row per checkpoint
    assert summary[0].split()[:3] == ["checkpoint", "swamla_local_mc", "acc"]
    assert [line.split()[0] for line in summary[1:]] == list(data)
    assert {line.split()[1] for line in summary[1:]} == {f"{accs[0]:.4f}"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--compare", "b"], "--eval does not apply to --compare"),
        (["--perplexity", "t.txt"], "give one of --perplexity, --eval, not several"),
        (["--windows", "rolling"], "--windows applies only to --perplexity"),
    ],
)
def test_cli_eval_flag_errors(capsys, extra, message):
    assert main(["--eval", "x.yaml", *extra]) == 2
    assert capsys.readouterr().err.strip() == f"swamla-tui: error: {message}"


def test_cli_eval_without_lm_eval_is_one_line(test_tokenizer_dir, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a)
    )
    assert main([*_flags(test_tokenizer_dir), "--eval", "x"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "swamla-tui: error: --eval needs lm-evaluation-harness: pip install 'swamla-tui[eval]'"
    )


def test_lm_eval_is_imported_only_by_eval():
    from tests.support.helpers import assert_imports_leave_out

    assert_imports_leave_out(
        ["swamla_tui.cli.main", "swamla_tui.cli.eval", "swamla_tui.evaluate.run"],
        ("lm_eval", "datasets", "evaluate"),
        then="from swamla_tui.cli.main import build_parser; build_parser().parse_args(['--eval', 'x'])",
    )
