"""Run lm-eval's own `hf` model on an export folder and dump each item's responses.

Run by tests/unit/test_evaluate.py and scripts/bench_eval.py as
`python tests/support/lm_eval_hf_run.py EXPORT_DIR TASK_DIR MAX_LENGTH OUT_JSON` in a fresh
process (transformers' dynamic modules stay out of the caller), with HF_MODULES_CACHE, the
datasets cache and the Hub offline set by the caller. The tasks are read by swamla-tui's
own `parse_tasks`, so both sides score the same configs.
"""

from __future__ import annotations

import json
import sys
import time


def main(export_dir: str, task_dir: str, max_length: str, out_json: str) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from swamla_tui.evaluate.run import parse_tasks

    tasks, named = parse_tasks(task_dir)
    t0 = time.perf_counter()
    res = simple_evaluate(
        model="hf",
        model_args=f"pretrained={export_dir},trust_remote_code=True,dtype=float32,"
        f"max_length={max_length},device=cpu",
        tasks=tasks,
        task_manager=TaskManager(include_defaults=named),
        log_samples=True,
        batch_size=4,
        random_seed=0,
        numpy_random_seed=1234,
        torch_random_seed=1234,
        fewshot_random_seed=1234,
    )
    seconds = time.perf_counter() - t0
    assert res is not None
    out = {
        "seconds": seconds,
        "samples": {
            task: {str(s["doc_id"]): s["resps"] for s in samples}
            for task, samples in res["samples"].items()
        },
        "results": res["results"],
    }
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(out, f, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:5])
