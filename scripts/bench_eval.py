"""Items per second on lm-eval tasks: ``--eval`` (our engine) against lm-eval's own `hf`
model on the ``--export`` of the same checkpoint, same tasks, same process, CPU float32.

Builds three local tasks under a temporary folder (nothing downloaded): a 4-way multiple
choice (`--items` questions), rolling log-likelihood of `--texts` texts (a third of them
longer than the context) and greedy generation (`--gen` prompts, `--gen_tokens` new tokens,
stop at a newline). Each side runs each task once, timed around lm-eval's `simple_evaluate`
(task building, requests and metrics included; model loading not), with the same batch
size. Also prints the largest per-item difference between the two (the parity check of
tests/unit/test_evaluate.py, on this model).

    python scripts/bench_eval.py                      # the bundled demo model
    python scripts/bench_eval.py --checkpoint X --items 400 --batch_size 16
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

_CORPUS = (
    "the quick brown fox jumps over a lazy dog while a model talks about science magic "
    "numbers lists python land far away once upon time there lived hello how are you today "
    "fine thank help ordered mutable sequence question answer"
)
WORDS = _CORPUS.split()

TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {name}.jsonl
test_split: test
output_type: {kind}
{extra}
metadata:
  version: 1.0
"""
EXTRA = {
    "multiple_choice": 'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_choice: choices\n'
    "doc_to_target: answer\nmetric_list:\n  - metric: acc\n",
    "loglikelihood_rolling": 'doc_to_text: ""\ndoc_to_target: "{{text}}"\nmetric_list:\n'
    "  - metric: word_perplexity\n",
    "generate_until": 'doc_to_text: "{{prompt}}"\ndoc_to_target: "{{target}}"\n'
    'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: {gen_tokens}\n  do_sample: false\n'
    "metric_list:\n  - metric: exact_match\n",
}


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_tasks(folder: Path, items: int, texts: int, gen: int, gen_tokens: int) -> None:
    rng = random.Random(0)
    rows: dict[str, list[dict[str, Any]]] = {
        "bench_mc": [
            {
                "question": _sentence(rng, rng.randint(8, 30)) + "?",
                "choices": [" " + _sentence(rng, rng.randint(2, 8)) for _ in range(4)],
                "answer": rng.randrange(4),
            }
            for _ in range(items)
        ],
        "bench_rolling": [
            {"text": _sentence(rng, rng.choice((60, 150, 600)))} for _ in range(texts)
        ],
        "bench_gen": [
            {"prompt": _sentence(rng, rng.randint(10, 40)), "target": " x"} for _ in range(gen)
        ],
    }
    kinds = {
        "bench_mc": "multiple_choice",
        "bench_rolling": "loglikelihood_rolling",
        "bench_gen": "generate_until",
    }
    for name, data in rows.items():
        if not data:
            continue
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in data:
                f.write(json.dumps(r) + "\n")
        extra = EXTRA[kinds[name]].replace("{gen_tokens}", str(gen_tokens))
        (folder / f"{name}.yaml").write_text(
            TASK.format(name=name, kind=kinds[name], extra=extra.rstrip("\n"))
        )


def _run(model: Any, cfg: dict[str, Any], batch_size: int) -> tuple[float, dict[str, Any]]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    t0 = time.perf_counter()
    res = simple_evaluate(
        model=model,
        tasks=[cfg],
        task_manager=TaskManager(include_defaults=False),
        log_samples=True,
        batch_size=batch_size,
        random_seed=0,
        numpy_random_seed=1234,
        torch_random_seed=1234,
        fewshot_random_seed=1234,
    )
    assert res is not None
    return time.perf_counter() - t0, res


def _max_diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    worst = 0.0
    same_text = True
    by_id = {s["doc_id"]: s for s in b}
    for s in a:
        for x, y in zip(s["resps"], by_id[s["doc_id"]]["resps"], strict=True):
            x, y = x[0], y[0]
            if isinstance(x, str):
                same_text &= x == y
            else:
                x = x[0] if isinstance(x, tuple | list) else x
                y = y[0] if isinstance(y, tuple | list) else y
                worst = max(worst, abs(float(x) - float(y)))
    return f"max |diff| {worst:.2e}" + ("" if same_text else ", texts differ")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(HERE.parent / "swamla_tui" / "demo"))
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--texts", type=int, default=24)
    ap.add_argument("--gen", type=int, default=16)
    ap.add_argument("--gen_tokens", type=int, default=32)
    ap.add_argument("--batch_size", type=int, default=8)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch
    from lm_eval.models.huggingface import HFLM

    import swamla_tui
    from swamla_tui.evaluate.lm import SwamlaLM
    from swamla_tui.evaluate.run import parse_tasks
    from swamla_tui.runtime.hf_export import export_checkpoint

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["HF_DATASETS_CACHE"] = str(tmp / "datasets")
        os.environ["HF_MODULES_CACHE"] = str(tmp / "modules")
        (tmp / "tasks").mkdir()
        write_tasks(tmp / "tasks", a.items, a.texts, a.gen, a.gen_tokens)
        lm = swamla_tui.load(a.checkpoint, device="cpu", dtype="float32")
        export = export_checkpoint(lm, tmp / "export")
        ours = SwamlaLM(lm, batch_size=a.batch_size)
        hf = HFLM(
            pretrained=str(export),
            trust_remote_code=True,
            dtype="float32",
            max_length=lm.max_length,
            batch_size=a.batch_size,
            device="cpu",
        )
        print(
            f"# {lm.source}: {lm.n_params / 1e6:.1f}M params, context {lm.max_length}, "
            f"torch threads {torch.get_num_threads()}, batch size {a.batch_size}"
        )
        print(
            f"{'task':<14}{'items':>6}{'ours s':>9}{'items/s':>9}{'hf s':>9}{'items/s':>9}  check"
        )
        tasks, _ = parse_tasks(str(tmp / "tasks"))
        for cfg in tasks:
            assert isinstance(cfg, dict)
            name = cfg["task"]
            t_ours, r_ours = _run(ours, cfg, a.batch_size)
            t_hf, r_hf = _run(hf, cfg, a.batch_size)
            n = len(r_ours["samples"][name])
            check = _max_diff(r_ours["samples"][name], r_hf["samples"][name])
            print(
                f"{name:<14}{n:>6}{t_ours:>9.2f}{n / t_ours:>9.1f}{t_hf:>9.2f}{n / t_hf:>9.1f}  {check}"
            )


if __name__ == "__main__":
    main()
