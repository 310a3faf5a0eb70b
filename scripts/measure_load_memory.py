"""Peak memory of `swamla_tui.load()` on a full-size training checkpoint.

Builds (in a temporary folder under /tmp, never in the repo) a training checkpoint of the
262M-parameter reference model the way the training script saves it: `_orig_mod.` keys,
float32 random weights, the 8 SWA `attn.mask` buffers [2048, 2048], and AdamW-like optimizer
state (`exp_avg`, `exp_avg_sq` per parameter): about 3.2 GB. Then, each in a fresh process:

- ours:     `swamla_tui.load(path, tokenizer=False)` (float32, CPU)
- baseline: `torch.load(path, map_location="cpu", weights_only=False)`

and reports peak RSS (`resource.getrusage(...).ru_maxrss` and `/proc/self/status` VmHWM)
and seconds. The checkpoint is deleted at the end.

    .venv/bin/python scripts/measure_load_memory.py            # build, measure, delete
    .venv/bin/python scripts/measure_load_memory.py --json     # also print a JSON line
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REF_PARAMS = 262_516_736
TARGET_MB = 1750.0


def proc_status_mb(field: str) -> float:
    """A /proc/self/status field (kB) in MB; NaN where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak() -> dict[str, float]:
    return {
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # kB on Linux
        "vmhwm_mb": proc_status_mb("VmHWM"),
        "vmrss_mb": proc_status_mb("VmRSS"),
    }


# ------------------------------------------------------------------------------ child side
def child(mode: str, path: str) -> None:
    import torch

    if mode == "ours":
        import swamla_tui
        import swamla_tui.runtime.load  # noqa: F401  (import cost counted before the clock starts)

    before = _peak()
    t0 = time.perf_counter()
    if mode == "ours":
        lm = swamla_tui.load(path, tokenizer=False, dtype="float32")
        seconds = time.perf_counter() - t0
        after_load = _peak()
        # the weights are memory-mapped: a first forward pass touches every one of them
        t1 = time.perf_counter()
        lm.logits(torch.zeros(1, 8, dtype=torch.long))
        extra = {
            "params": lm.n_params,
            "dtype": str(lm.dtype),
            "summary": lm.summary(),
            "first_forward_s": round(time.perf_counter() - t1, 2),
            "after_first_forward": _peak(),
        }
    else:
        obj = torch.load(path, map_location="cpu", weights_only=False)
        seconds = time.perf_counter() - t0
        after_load = _peak()
        extra = {"keys": sorted(obj)}
    out = {
        "mode": mode,
        "load_s": round(seconds, 2),
        "after_imports": before,
        **after_load,
        **extra,
    }
    print("RESULT " + json.dumps(out))


# ------------------------------------------------------------------------------ builder
def training_args() -> dict:
    return {
        "size": "small",
        "batch_size": 8,
        "block_size": 2048,
        "swa_layers_per_cycle": 2,
        "mla_layers_per_cycle": 1,
        "swa_window": 256,
        "swa_sink_size": 4,
        "mla_q_lora_rank": 0,
        "mla_kv_lora_rank": 256,
        "mla_qk_nope_head_dim": 128,
        "mla_qk_rope_head_dim": 64,
        "mla_v_head_dim": 128,
        "learning_rate": 1e-4,
        "optimizer_type": "adamw",
        "use_fp8": False,
        "tokenizer_name": "openai-community/gpt2",
        "compile": True,
    }


def build(path: Path) -> dict[str, float]:
    """Write the training checkpoint; returns its size and the parameter count."""
    import torch

    from swamla_tui.bench.run import reference_config  # the 262M model the benchmarks share
    from swamla_tui.model.transformer import SWAMLA

    cfg = reference_config()
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in SWAMLA(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    sd: dict[str, torch.Tensor] = {}
    params: list[torch.Tensor] = []
    for k, shape in shapes.items():
        if k == "lm_head.weight":
            continue
        t = torch.empty(shape)
        if k.endswith("norm.weight") or k.endswith(("norm1.weight", "norm2.weight", "ln_f.weight")):
            t.fill_(1.0)
        elif k.endswith(".bias"):
            t.zero_()
        else:
            t.normal_(0.0, 0.02, generator=g)
        sd[k] = t
        params.append(t)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied: one tensor, two keys
    n_params = sum(t.numel() for t in params)
    if n_params != REF_PARAMS:
        raise SystemExit(f"reference model has {n_params:,} params, expected {REF_PARAMS:,}")
    mask = torch.full((cfg.block_size, cfg.block_size), float("-inf")).triu(1)
    for i, kind in enumerate(cfg.layer_kinds):
        if kind == "swa":
            sd[f"transformer.h.{i}.attn.mask"] = mask.clone()  # 8 separate 16 MB buffers
    state = {}
    for i, p in enumerate(params):
        state[i] = {
            "step": torch.tensor(1000.0),
            "exp_avg": torch.empty_like(p).normal_(0.0, 1e-3, generator=g),
            "exp_avg_sq": torch.empty_like(p).uniform_(0.0, 1e-6, generator=g),
        }
    optimizer = {
        "state": state,
        "param_groups": [
            {
                "lr": 1e-4,
                "betas": (0.9, 0.95),
                "eps": 1e-8,
                "weight_decay": 0.1,
                "amsgrad": False,
                "params": list(range(len(params))),
            }
        ],
    }
    ckpt = {
        "model": {"_orig_mod." + k: v for k, v in sd.items()},
        "optimizer": optimizer,
        "step": 1000,
        "config": training_args(),
    }
    torch.save(ckpt, path)
    return {"file_gb": path.stat().st_size / 1e9, "params": n_params}


def run_script(script: str, argv: list[str], timeout: float = 1800) -> dict:
    """Run `script` in a fresh Python process (a clean peak RSS); its ``RESULT {json}`` line.

    Shared with bench_perplexity_export.py; a failed child ends this process with its stderr.
    """
    r = subprocess.run(
        [sys.executable, script, *argv], capture_output=True, text=True, timeout=timeout
    )
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if r.returncode != 0 or line is None:
        raise SystemExit(f"{' '.join(argv)} failed (rc {r.returncode}):\n{r.stderr[-3000:]}")
    return dict(json.loads(line.removeprefix("RESULT ")))


def measure(mode: str, path: Path) -> dict:
    return run_script(__file__, ["--child", mode, str(path)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--build", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default="/tmp", help="where to build the checkpoint (default /tmp)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    ap.add_argument("--skip-baseline", action="store_true", help="measure only swamla_tui.load")
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    if a.build:
        print("RESULT " + json.dumps(build(Path(a.build))))
        return

    free = shutil.disk_usage(a.tmp).free / 1e9
    if free < 4.0:
        raise SystemExit(f"{a.tmp} has {free:.1f} GB free; about 3.5 GB are needed")
    work = Path(tempfile.mkdtemp(prefix="swamla_mem_", dir=a.tmp))
    try:
        path = work / "checkpoint_1000.pt"
        t0 = time.perf_counter()
        # built in its own process: a child inherits its parent's peak RSS (ru_maxrss)
        info = run_script(__file__, ["--build", str(path)])
        print(
            f"built {path} ({info['file_gb']:.2f} GB, {info['params']:,} params) "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        results = {"file_gb": round(info["file_gb"], 3), "ours": measure("ours", path)}
        if not a.skip_baseline:
            results["baseline"] = measure("baseline", path)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def row(name: str, r: dict) -> str:
        base = r["after_imports"]["vmhwm_mb"]
        return (
            f"{name:<34} peak RSS {r['ru_maxrss_mb']:7.0f} MB (ru_maxrss)  "
            f"{r['vmhwm_mb']:7.0f} MB (VmHWM)  after imports {base:5.0f} MB  load {r['load_s']:6.2f} s"
        )

    print(row("swamla_tui.load (float32, cpu)", results["ours"]))
    fwd = results["ours"]["after_first_forward"]  # the weights read in: the honest peak
    print(
        f"{'  + first forward (all weights read)':<34} peak RSS {fwd['ru_maxrss_mb']:7.0f} MB "
        f"(ru_maxrss)  {fwd['vmhwm_mb']:7.0f} MB (VmHWM)  "
        f"forward {results['ours']['first_forward_s']:.2f} s"
    )
    if "baseline" in results:
        print(row("torch.load(weights_only=False)", results["baseline"]))
    peak = max(fwd["ru_maxrss_mb"], fwd["vmhwm_mb"])
    verdict = "OK" if peak <= TARGET_MB else "OVER"
    print(f"target: peak RSS <= {TARGET_MB:.0f} MB for swamla_tui.load: {verdict} ({peak:.0f} MB)")
    if a.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
