"""A/B of three CPU decode choices in one process (issue 27, 2026-12-02 EPYC section of
BENCHMARKS.md): engine decode steps of the 262M benchmark model, the two variants
alternating round by round, medians printed with every round and whether both drew the
same tokens. The first line names the CPU.

- `--what layout`: float32 products in oneDNN on row-major weights (what `load` does on
  AMD CPUs) against the BLAS on column-major weights (what it does on Intel).
- `--what fused`: projections sharing an input as one product (`SharedInput`) against the
  members run one by one (`--dtype`, `--quantize`).
- `--what swa-cache`: a bfloat16 model's SWA keys/values in float32 against bfloat16.
- `--what int8`: `--quantize int8-dynamic` against `int8-split` (two models, float32).

    PYTHONPATH=. python scripts/ab_decode_paths.py --what layout --rows 8
    PYTHONPATH=. python scripts/ab_decode_paths.py --what fused --quantize int8 --rounds 10
    PYTHONPATH=. python scripts/ab_decode_paths.py --what swa-cache --rows 16 --prompt 500
    PYTHONPATH=. python scripts/ab_decode_paths.py --what int8 --rows 16 --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from swamla_tui.base.params import SamplingParams
from swamla_tui.bench.cpu import cpu_line
from swamla_tui.bench.run import build_model, reference_config
from swamla_tui.engine.decode_loop import Generation
from swamla_tui.model.shared_input import shared_inputs
from swamla_tui.model.transformer import SWAMLA

Variant = tuple[str, SWAMLA, Callable[[], None]]  # name, model, switch it on


def _variants(a: argparse.Namespace) -> list[Variant]:
    cpu = torch.device("cpu")
    if a.what == "layout":
        new = build_model(reference_config(), cpu, torch.float32, False)
        os.environ["SWAMLA_CPU_LAYOUT"] = "0"  # plain row-major, then the Intel layout
        old = build_model(reference_config(), cpu, torch.float32, False)
        del os.environ["SWAMLA_CPU_LAYOUT"]
        old.use_cpu_decode_layout()
        old.prepare(column_major=True)
        return [
            ("column-major BLAS", old, lambda: None),
            ("as load() picks here", new, lambda: None),
        ]
    if a.what == "int8":
        kinds = ("int8-dynamic", "int8-split")
        models = [build_model(reference_config(), cpu, torch.float32, False) for _ in kinds]
        for k, mm in zip(kinds, models, strict=True):
            mm.quantize(k)
        return [(k, mm, lambda: None) for k, mm in zip(kinds, models, strict=True)]
    dtype = torch.bfloat16 if a.what == "swa-cache" else getattr(torch, a.dtype)
    m = build_model(reference_config(), cpu, dtype, False)
    if a.quantize:
        m.quantize(a.quantize)
    if a.what == "fused":
        sis = shared_inputs(m)
        saved = [si._fused for si in sis]

        def switch(on: bool) -> None:
            for si, f in zip(sis, saved, strict=True):
                si._fused = f if on else []

        return [("one by one", m, lambda: switch(False)), ("fused", m, lambda: switch(True))]
    setup = SWAMLA.setup_cache

    def cache_in(dt: torch.dtype) -> None:
        def patched(self: SWAMLA, *args: Any, **kw: Any) -> Any:
            c = setup(self, *args, **kw)
            c.swa_k = [None if t is None else t.to(dt) for t in c.swa_k]
            c.swa_v = [None if t is None else t.to(dt) for t in c.swa_v]
            return c

        SWAMLA.setup_cache = patched  # type: ignore[method-assign]

    return [
        ("bfloat16 cache", m, lambda: cache_in(torch.bfloat16)),
        ("float32 cache", m, lambda: cache_in(torch.float32)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", choices=("layout", "fused", "swa-cache", "int8"), required=True)
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=32, help="prompt tokens per row")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=15, help="timed steps (after 4 warm-up)")
    ap.add_argument("--dtype", default="float32", help="--what fused")
    ap.add_argument("--quantize", default=None, help="--what fused: an int8 kind")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# {cpu_line()} · threads {a.threads}", flush=True)
    variants = _variants(a)
    params = SamplingParams(
        temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1, max_new_tokens=4096, seed=0
    )
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 50257, (a.prompt,), generator=g).tolist() for _ in range(a.rows)]
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    tokens: dict[str, list[list[int | None]]] = {}
    for _ in range(a.rounds):
        for name, model, on in variants:
            on()
            it = iter(Generation(model, prompts, params, max_length=2048, eos_id=None))
            toks = [next(it) for _ in range(4)]
            t0 = time.perf_counter()
            toks += [next(it) for _ in range(a.steps)]
            times[name].append((time.perf_counter() - t0) / a.steps * 1000)
            tokens[name] = toks
    for name, ts in times.items():
        rounds = ", ".join(f"{t:.1f}" for t in ts)
        print(f"{name:22s} median {statistics.median(ts):7.1f} ms/step  (rounds: {rounds})")
    same = len({str(t) for t in tokens.values()}) == 1
    print(f"{a.rows} rows, {a.prompt}-token prompts; same tokens: {same}")


if __name__ == "__main__":
    main()
