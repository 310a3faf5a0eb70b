"""``--eval TASKS``: lm-evaluation-harness tasks on a checkpoint, or on each of a run's.

TASKS is a comma-separated list of lm-eval task names (its built-in ones, downloaded as
lm-eval downloads them) and paths: a task YAML file, or a folder of them. A relative
``data_files`` path in a YAML is read next to that YAML (so a local task travels as one
folder); lm-eval itself would read it from the working folder.

Results: lm-eval's table on stdout; with ``--output FILE.json`` lm-eval's results JSON in
that file (for a run: one object per checkpoint, by its path); with ``--output DIR``
lm-eval's own layout under DIR (``<model>/results_<time>.json`` and the samples files).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from ..base.errors import SwamlaError, one_line
from ..base.safe_text import visible

Loader = Callable[[Callable[[str], None]], Any]


class TaskSpecError(SwamlaError):
    """``--eval`` names no task, or a path that is not a task YAML or a folder of them."""


def _local_data(cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`cfg` with relative ``dataset_kwargs.data_files`` resolved against `folder`."""
    kwargs = cfg.get("dataset_kwargs")
    if not isinstance(kwargs, dict) or kwargs.get("data_files") is None:
        return cfg
    files = kwargs["data_files"]

    def fix(p: Any) -> Any:
        if isinstance(p, str) and not os.path.isabs(p) and (folder / p).exists():
            return str(folder / p)
        return p

    if isinstance(files, dict):
        files = {
            k: [fix(x) for x in v] if isinstance(v, list) else fix(v) for k, v in files.items()
        }
    elif isinstance(files, list):
        files = [fix(x) for x in files]
    else:
        files = fix(files)
    return {**cfg, "dataset_kwargs": {**kwargs, "data_files": files}}


def _yaml_loader() -> Callable[[str], Any]:
    """lm-eval's task-YAML reader (its ``include:`` and ``!function`` tags resolved, as its
    own CLI does: a ``!function`` runs Python from the task's folder, like any lm-eval task)."""
    from lm_eval.tasks._yaml_loader import load_yaml  # what `lm_eval --tasks x.yaml` calls

    return lambda path: load_yaml(path, resolve_func=True)


def parse_tasks(spec: str) -> tuple[list[str | dict[str, Any]], bool]:
    """(lm-eval task names and YAML configs, whether lm-eval's own task index is needed)."""
    load_yaml_config = _yaml_loader()
    tasks: list[str | dict[str, Any]] = []
    named = False
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        path = Path(item).expanduser()
        yamls: list[Path] = []
        if path.is_dir():
            yamls = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not yamls:
                raise TaskSpecError(f"--eval {item}: no task YAML in this folder")
        elif path.is_file():
            if path.suffix not in (".yaml", ".yml"):
                raise TaskSpecError(f"--eval {item}: not a task YAML (.yaml)")
            yamls = [path]
        elif "/" in item or item.endswith((".yaml", ".yml")):
            raise TaskSpecError(f"--eval {item}: no such file or folder")
        else:
            tasks.append(item)
            named = True
        for y in yamls:
            try:
                cfg = load_yaml_config(str(y))
            except Exception as e:  # noqa: BLE001 - YAML and include errors alike
                raise TaskSpecError(f"--eval {y}: cannot read the task ({one_line(e)})") from None
            if not isinstance(cfg, dict) or "task" not in cfg:
                raise TaskSpecError(f"--eval {y}: not a task YAML (no 'task' key)")
            tasks.append(_local_data(cfg, y.resolve().parent))
    if not tasks:
        raise TaskSpecError("--eval: no task given")
    return tasks, named


def evaluate(
    lm: Any,
    tasks: Sequence[str | dict[str, Any]],
    *,
    named: bool = True,
    batch_size: int | None = None,
    limit: float | None = None,
    log_samples: bool = False,
) -> dict[str, Any]:
    """lm-eval's `simple_evaluate` of `tasks` on `lm` (a loaded model): its results dict."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from .lm import SwamlaLM

    model = SwamlaLM(lm, batch_size=batch_size)
    manager = TaskManager(include_defaults=named)
    results: dict[str, Any] | None = simple_evaluate(
        model=model,
        model_args=f"pretrained={model.model.source}",
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        log_samples=log_samples,
        batch_size=model.batch_size,
        random_seed=0,
        numpy_random_seed=1234,
        torch_random_seed=1234,
        fewshot_random_seed=1234,
    )
    if results is None:  # pragma: no cover - only on distributed ranks > 0
        raise SwamlaError("lm-eval returned no results")
    results["config"]["model"] = "swamla-tui"
    return results


def results_json(results: dict[str, Any]) -> str:
    """lm-eval's results JSON (as its CLI dumps it; samples left out)."""
    from lm_eval.utils import handle_non_serializable

    data = {k: v for k, v in results.items() if k != "samples"}
    return json.dumps(data, indent=2, default=handle_non_serializable, ensure_ascii=False)


def _save_dir(results: dict[str, Any], out_dir: str, source: str) -> None:
    """lm-eval's own layout: ``OUT/<model>/results_<time>.json`` (+ samples files)."""
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=out_dir)
    tracker.general_config_tracker.log_experiment_args(
        model_source="swamla-tui",
        model_args=f"pretrained={source}",
        system_instruction=None,
        chat_template=None,
        fewshot_as_multiturn=False,
    )
    samples = results.pop("samples", None)
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results.get("configs", {}) if samples else ():
        tracker.save_results_samples(task_name=task, samples=samples[task])


def summary_table(all_results: dict[str, dict[str, Any]]) -> str:
    """One row per checkpoint, one column per task metric (stderr left out): a run's
    checkpoints side by side."""
    cols: list[tuple[str, str]] = []
    for res in all_results.values():
        for task, metrics in res.get("results", {}).items():
            for key, value in metrics.items():
                numeric = isinstance(value, int | float) and "," in key and "stderr" not in key
                if numeric and (task, key) not in cols:
                    cols.append((task, key))
    names = [visible(n) for n in all_results]
    width = max([len("checkpoint"), *(len(n) for n in names)])
    heads = [f"{t} {k.removesuffix(',none')}" for t, k in cols]
    lines = ["  ".join(["checkpoint".ljust(width), *heads])]
    for name, res in zip(names, all_results.values(), strict=True):
        cells = []
        for (task, key), head in zip(cols, heads, strict=True):
            v = res.get("results", {}).get(task, {}).get(key)
            cells.append((f"{v:.4f}" if isinstance(v, int | float) else "-").rjust(len(head)))
        lines.append("  ".join([name.ljust(width), *cells]))
    return "\n".join(lines)


def _say(name: str, err: IO[str]) -> Callable[[str], None]:
    return lambda s: print(f"… {visible(name)}: {visible(s)}", file=err)


def run_eval(
    loaders: Sequence[tuple[str, Loader]],
    spec: str,
    *,
    batch_size: int | None = None,
    limit: float | None = None,
    output: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The CLI's ``--eval``: each (name, loader) in turn, one model in memory at a time."""
    from lm_eval.utils import make_table

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    tasks, named = parse_tasks(spec)  # a bad spec fails before any model loads
    to_file = output is not None and Path(output).suffix.lower() == ".json"
    if output is not None and not to_file and Path(output).suffix:
        raise TaskSpecError(f"--output {output}: --eval writes FILE.json or a folder")
    all_results: dict[str, dict[str, Any]] = {}
    for name, load in loaders:
        lm = load(_say(name, err))
        for n in getattr(lm, "notices", ()):
            print(f"note: {visible(str(n))}", file=err)
        res = evaluate(
            lm, tasks, named=named, batch_size=batch_size, limit=limit, log_samples=not to_file
        )
        source = str(getattr(lm, "source", name))
        del lm
        if len(loaders) > 1:
            print(f"\n{visible(name)}", file=out)
        print(make_table(res), file=out)
        if output is not None and not to_file:
            _save_dir(res, output, source)
        all_results[name] = res
    if len(all_results) > 1:
        print("\n" + summary_table(all_results), file=out)
    if to_file and output is not None:
        if len(all_results) == 1:
            text = results_json(next(iter(all_results.values())))
        else:
            by_name = {k: json.loads(results_json(v)) for k, v in all_results.items()}
            text = json.dumps(by_name, indent=2, ensure_ascii=False)
        try:
            Path(output).expanduser().write_text(text + "\n", encoding="utf-8")
        except OSError as e:
            raise SwamlaError(
                f"{output}: cannot write ({e.strerror or type(e).__name__})"
            ) from None
    return all_results
