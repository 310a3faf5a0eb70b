"""Profile one decode step of the 262M reference model (eager body of the fused graph).

Usage: python scripts/profile_decode.py --device cuda --batch 1 64
Prints the kernel count and the top GPU/CPU ops per step, to see what a graph replay costs.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from swamla_tui.base.params import SamplingParams
from swamla_tui.bench.run import build_model, reference_config
from swamla_tui.engine.decoder import GraphLoop


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    dev = torch.device(a.device)
    dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    m = build_model(reference_config(), dev, dt, False)
    p = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1)
    for b in a.batch:
        cache = m.setup_cache(b, 2048)
        loop = GraphLoop(m, cache, capture=False)
        loop.load(
            torch.zeros(b, dtype=torch.long, device=dev),
            torch.zeros(b, dtype=torch.long, device=dev),
            0,
        )
        with torch.inference_mode():
            for _ in range(3):
                loop.advance(p, None)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                loop.advance(p, None)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            eager = (time.perf_counter() - t0) / 5
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            with profile(activities=acts) as prof:
                loop.advance(p, None)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
        ev = prof.key_averages()
        key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        n_kernels = sum(
            e.count
            for e in ev
            if getattr(e, "device_type", None) is not None and str(e.device_type).endswith("CUDA")
        )
        print(f"=== batch {b}: eager step {eager * 1000:.2f} ms, GPU kernels per step ~{n_kernels}")
        print(ev.table(sort_by=key, row_limit=14, max_name_column_width=60))


if __name__ == "__main__":
    main()
