"""Cost of the NaN/Inf weight check inside `swamla_tui.load()` on the 262M reference model.

Builds (under /tmp, deleted at the end) a float32 state-dict checkpoint of the 262M
reference model with random weights, loads it `--runs` times on the CPU and reports, per
load, the wall time of `load()` and the time spent in `ckpt.tensors.all_finite` (the check
`_build` runs on every weight right after copying it).

    .venv/bin/python scripts/measure_nan_check.py                # default threads
    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_nan_check.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import swamla_tui
import swamla_tui.checkpoint.tensors as ckpt_tensors
from swamla_tui.bench.run import build_model, reference_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    model = build_model(reference_config(), torch.device("cpu"), torch.float32, False)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    del model
    folder = Path(tempfile.mkdtemp(prefix="swamla_nan_check_", dir="/tmp"))
    path = folder / "ref262m.pt"
    torch.save({"model": sd, "config": {"block_size": 2048, "swa_window": 256,
                                        "swa_sink_size": 4}}, path)  # fmt: skip
    del sd
    check = ckpt_tensors.all_finite
    spent = [0.0]

    def timed(t: torch.Tensor) -> bool:
        t0 = time.perf_counter()
        ok = check(t)
        spent[0] += time.perf_counter() - t0
        return ok

    ckpt_tensors.all_finite = timed  # type: ignore[assignment]
    loads, checks = [], []
    try:
        for _ in range(a.runs):
            spent[0] = 0.0
            t0 = time.perf_counter()
            lm = swamla_tui.load(path, tokenizer=False)
            loads.append(time.perf_counter() - t0)
            checks.append(spent[0])
            del lm
    finally:
        ckpt_tensors.all_finite = check  # type: ignore[assignment]
        path.unlink()
        folder.rmdir()
    shares = [100 * c / t for c, t in zip(checks, loads, strict=True)]
    print(
        f"threads {torch.get_num_threads()}, {a.runs} loads of a {262_516_736:,}-param float32 checkpoint"
    )
    print("load s :", " ".join(f"{x:.2f}" for x in loads))
    print("check s:", " ".join(f"{x:.3f}" for x in checks))
    print(f"check share of load time: median {statistics.median(shares):.1f}% "
          f"(min {min(shares):.1f}%, max {max(shares):.1f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
