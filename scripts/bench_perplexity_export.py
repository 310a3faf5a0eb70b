"""Perplexity throughput and export load time on the 262M benchmark model (CPU).

Perplexity: builds the reference model (`swamla_tui.bench.run.build_model`, random weights)
in float32 and bfloat16 and scores N random token ids with `swamla_tui.runtime.perplexity.score_ids`
(window = 2048, default stride 1024, batched prefill). Reports scored tokens per second
(each scored token costs about two forward positions at stride L/2).

Export: writes a training-style checkpoint of the same model (`measure_load_memory.build`:
float32 weights, SWA mask buffers, AdamW state; about 3.2 GB) under --tmp, loads it and
exports it (float32 and bfloat16), then times in fresh processes, alternating, `--repeat`
times each: `swamla_tui.load(checkpoint)` and `load_exported(export)`, each followed by a
first forward (the weights are memory-mapped: touching them may cost there), then a
second load in the same process (imports and torch's first-use setup already paid). Files are
deleted at the end. The page cache is warm for every file (each was just written).

    .venv/bin/python scripts/bench_perplexity_export.py            # both parts
    .venv/bin/python scripts/bench_perplexity_export.py --part ppl --tokens 8192
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from measure_load_memory import build, proc_status_mb, run_script  # noqa: E402


def _hwm_mb() -> float:
    """Peak RSS of this process (VmHWM; ru_maxrss would carry the parent's over exec)."""
    return proc_status_mb("VmHWM")


def bench_perplexity(dtype: str, n_tokens: int, stride: int | None) -> dict:
    import torch

    from swamla_tui.bench.run import build_model, reference_config
    from swamla_tui.runtime.load import LoadedModel
    from swamla_tui.runtime.perplexity import plan_windows, score_ids

    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    cfg = reference_config()
    model = build_model(cfg, torch.device("cpu"), dt, window=False)
    lm = LoadedModel(
        model, cfg, None, source="bench-262M", meta={}, max_length=cfg.block_size,
        stored_dtype=dtype, notices=[],
    )  # fmt: skip
    ids = torch.randint(0, cfg.vocab_size, (n_tokens,), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model(ids[None, :64])  # warm-up: thread pool, allocator
    t0 = time.perf_counter()
    nll, scored = score_ids(lm, ids.tolist(), stride=stride)
    dt_s = time.perf_counter() - t0
    wins = plan_windows(n_tokens, lm.max_length, stride or lm.max_length // 2)
    return {
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "scored_tokens": scored,
        "fed_tokens": sum(w.end - w.begin for w in wins),
        "windows": len(wins),
        "seconds": round(dt_s, 2),
        "scored_tok_per_s": round(scored / dt_s, 1),
        "loss": round(nll / scored, 4),
    }


# ------------------------------------------------------------------------------ children
def child(mode: str, path: str, out: str | None) -> None:
    import torch

    import swamla_tui.runtime.load  # noqa: F401  (import cost before the clock)
    from swamla_tui.runtime.hf_export import export_checkpoint, load_exported

    t0 = time.perf_counter()
    if mode == "export":
        lm = swamla_tui.runtime.load.load(path, tokenizer=False, dtype="float32")
        t1 = time.perf_counter()
        res = {"load_s": round(t1 - t0, 2)}
        for dtype in ("float32", "bfloat16"):
            t = time.perf_counter()
            d = export_checkpoint(lm, Path(out or "") / dtype, dtype=dtype)
            res[f"export_{dtype}_s"] = round(time.perf_counter() - t, 2)
            res[f"export_{dtype}_gb"] = round((d / "model.safetensors").stat().st_size / 1e9, 3)
        print("RESULT " + json.dumps(res))
        return

    def load() -> Any:
        if mode == "ckpt":
            return swamla_tui.runtime.load.load(path, tokenizer=False, dtype="float32")
        # "export-float32" | "export-bfloat16": run in the dtype it was stored in
        return load_exported(path, tokenizer=False, dtype=mode.split("-")[1])

    lm = load()
    load_s = time.perf_counter() - t0
    rss_load = _hwm_mb()
    t1 = time.perf_counter()
    with torch.inference_mode():
        lm.model(torch.zeros(1, 8, dtype=torch.long))
    res = {
        "mode": mode,
        "load_s": round(load_s, 2),
        "first_forward_s": round(time.perf_counter() - t1, 2),
        "load_plus_forward_s": round(time.perf_counter() - t0, 2),
        "peak_rss_mb_after_load": round(rss_load),
        "peak_rss_mb": round(_hwm_mb()),
        "params": lm.n_params,
    }
    del lm
    t2 = time.perf_counter()  # again in the same process: imports and first-use setup done
    load()
    res["second_load_s"] = round(time.perf_counter() - t2, 2)
    print("RESULT " + json.dumps(res))


def _run(argv: list[str]) -> dict:
    return run_script(__file__, argv, timeout=3600)


def bench_export(tmp_root: str, repeat: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="swamla-export-bench-", dir=tmp_root))
    try:
        ckpt = tmp / "checkpoint_1000.pt"
        t = time.perf_counter()
        info = build(ckpt)
        info["build_s"] = round(time.perf_counter() - t, 1)
        info["export"] = _run(["--child", "export", str(ckpt), str(tmp / "export")])
        runs: dict[str, list[dict]] = {"ckpt": [], "export-float32": [], "export-bfloat16": []}
        for _ in range(repeat):
            runs["ckpt"].append(_run(["--child", "ckpt", str(ckpt)]))
            for dtype in ("float32", "bfloat16"):
                path = str(tmp / "export" / dtype)
                runs[f"export-{dtype}"].append(_run(["--child", f"export-{dtype}", path]))
        info["runs"] = runs
        return info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--part", choices=("ppl", "export", "both"), default="both")
    ap.add_argument("--tokens", type=int, default=4096, help="ids to score (default 4096)")
    ap.add_argument("--stride", type=int, default=None, help="default: window // 2")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--repeat", type=int, default=2, help="timed loads per format")
    ap.add_argument("--tmp", default="/tmp", help="where the checkpoint is written")
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] if len(args.child) > 2 else None)
        return
    results: dict[str, object] = {}
    if args.part in ("ppl", "both"):
        ppl = []
        for d in args.dtypes.split(","):
            r = bench_perplexity(d, args.tokens, args.stride)
            ppl.append(r)
            print(
                f"perplexity {r['dtype']:>8}: {r['scored_tokens']} tokens in {r['seconds']} s "
                f"= {r['scored_tok_per_s']} tok/s ({r['windows']} windows, "
                f"{r['fed_tokens']} positions fed, {r['threads']} threads)",
                flush=True,
            )
        results["perplexity"] = ppl
    if args.part in ("export", "both"):
        info = bench_export(args.tmp, args.repeat)
        results["export"] = info
        print(f"checkpoint {info['file_gb']:.2f} GB; export: {info['export']}")
        for mode, rs in info["runs"].items():
            for r in rs:
                print(
                    f"load {mode:>15}: {r['load_s']:6.2f} s + first forward "
                    f"{r['first_forward_s']:.2f} s, peak RSS {r['peak_rss_mb']} MB; "
                    f"loaded again in the same process: {r['second_load_s']:.2f} s"
                )
    print("JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
