"""A/B of the CPU speed paths in one process (issue 14): single-stream decode tok/s of the
262M benchmark model for float32, bfloat16 (PyTorch's bfloat16 kernel vs the packed float16
products) and the int8 paths (int8-split, int8-weight, int8-dynamic; "int8" is the one
`--quantize int8` picks here), rounds alternating, each next to the floors measured right
after it. The first line names the CPU (`swamla_tui.bench.cpu`). `--batch`: float32 batch 16 x 64 aggregate, prefill head over every prompt
token (before) vs the last one only (now).

    PYTHONPATH=. python scripts/ab_cpu_speed.py --threads 2 --rounds 3
    PYTHONPATH=. python scripts/ab_cpu_speed.py --threads 2 --rounds 2 --batch
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import torch

from swamla_tui.base.params import SamplingParams
from swamla_tui.bench import run as bench
from swamla_tui.bench.cpu import cpu_line
from swamla_tui.engine.pool import CachePool
from swamla_tui.model.fuse import PackedLinear
from swamla_tui.model.quant import QUANTIZE_CHOICES


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new", type=int, default=24)
    ap.add_argument("--batch", action="store_true")
    ap.add_argument(
        "--variants",
        default="f32,bf16-kernel,bf16-packed,int8-split,int8-weight,int8-dynamic",
        help="of f32, bf16-kernel, bf16-packed, int8, int8-split, int8-weight, int8-dynamic",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cpu = torch.device("cpu")
    cfg = bench.reference_config()
    params = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1, seed=0)
    g = torch.Generator().manual_seed(1)

    def rand(n: int) -> list[int]:
        return torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist()  # type: ignore[no-any-return]

    print(f"# {cpu_line()} · torch {torch.__version__}", flush=True)
    print(f"# threads {a.threads}, load average {os.getloadavg()}", flush=True)
    if a.batch:
        m = bench.build_model(cfg, cpu, torch.float32, False)
        pool = CachePool(m, 2048, graphs=False, compile=False)
        orig = m.forward_cached

        def every(*args: Any, last_only: bool = False, **kw: Any) -> torch.Tensor:
            return orig(*args, **kw)  # the head over every position, as before

        res: dict[str, list[float]] = {"before": [], "now": []}
        for r in range(a.rounds):
            for k in res:
                m.forward_cached = every if k == "before" else orig  # type: ignore[method-assign]
                g2 = torch.Generator().manual_seed(2)
                prompts = [rand(int(torch.randint(16, 49, (1,), generator=g2))) for _ in range(16)]
                x = bench.engine_run(m, prompts, 64, params, pool)
                fl = 16 / bench.kernel_floor(m, 16)
                res[k].append(x["total_tok_s"])
                print(f"{r} {k:7s} aggregate {x['total_tok_s']:.1f} tok/s (decode "
                      f"{x['decode_tok_s']:.1f}, ttft {x['ttft_s']:.2f} s) floor b16 {fl:.1f} "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        for k, v in res.items():
            print(f"{k}: best {max(v):.1f} median {statistics.median(v):.1f}")
        return
    models: dict[str, Any] = {}
    want = a.variants.split(",")
    if "f32" in want:
        models["f32"] = bench.build_model(cfg, cpu, torch.float32, False)
    if {"bf16-kernel", "bf16-packed"} & set(want):
        mb = bench.build_model(cfg, cpu, torch.bfloat16, False)
        models["bf16-kernel"] = models["bf16-packed"] = mb
        packs = {mod: mod._fp16 for mod in mb.modules() if isinstance(mod, PackedLinear)}
        print(f"bf16: {len(packs)} packed products", flush=True)
    for q in QUANTIZE_CHOICES:
        if q in want:
            mq = bench.build_model(cfg, cpu, torch.float32, False)
            mq.quantize(q)
            models[q] = mq
    pools = {k: CachePool(m, 2048, graphs=False, compile=False) for k, m in models.items()}
    for k in want:
        bench.engine_run(models[k], [rand(16)], 4, params, pools[k])  # warm-up
    out: dict[str, list[float]] = {k: [] for k in want}
    for r in range(a.rounds):
        for k in want:
            m = models[k]
            if k.startswith("bf16"):
                for mod, p in packs.items():
                    mod._fp16 = p if k == "bf16-packed" else None
            x = bench.engine_run(m, [rand(32)], a.new, params, pools[k])
            kf = 1 / bench.kernel_floor(m)
            ff = 1 / bench.matmul_floor(m)[0]
            out[k].append(x["decode_tok_s"])
            print(f"{r} {k:12s} {x['decode_tok_s']:6.2f} tok/s  own-kernel floor {kf:6.2f}  "
                  f"float floor {ff:6.2f}  load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    for k, v in out.items():
        print(f"{k:12s} best {max(v):6.2f} median {statistics.median(v):6.2f} tok/s")


if __name__ == "__main__":
    main()
