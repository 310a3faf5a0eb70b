"""`python -m swamla_tui.bench.int8_kernels`: the int8 products against float32 on the 262M
model's shapes, in one process, rounds interleaved (issue 27 item 2).

Why a kernel-level A/B next to the model-level one (`scripts/ab_cpu_speed.py`): it shows
which formulation wins at which row count, which is how `quant.WEIGHT_ONLY_MAX_ROWS` and
the split kernel's layout were chosen. Variants per shape and row count:

- ``f32``: `nn.Linear` in float32, column-major where the model stores it so (as loaded);
- ``split``: `--quantize int8-split` (what `--quantize int8` runs where FBGEMM is missing
  and AVX-512 VNNI present): oneDNN's int8 matmul, each input row as two int8 rows (value,
  remainder);
- ``w8a8``: the same kernel with one int8 row per input row (no remainder: faster above
  ~16 rows, 5x the KL of ``split`` on the demo model, BENCHMARKS.md), for reference;
- ``weight``: `quant.Int8Linear` as the model runs it (`--quantize int8-weight`:
  weight-only kernel with bfloat16 inputs up to `WEIGHT_ONLY_MAX_ROWS` rows, a bfloat16
  copy and a GEMM above);
- ``woq-bf16`` / ``copy-gemm``: those two formulations forced at every row count;
- ``woq-f32``: the weight-only kernel with float32 inputs (scalar code);
- ``dynamic``: `quant.Int8DynamicLinear` on FBGEMM (`--quantize int8-dynamic`).

``split`` and ``w8a8`` need exact int8 sums (`quant.int8_sums_exact`); where they are
inexact they are left out and the header line says so. Times are the best and median of
the rounds, in ms per call; the machine line says where.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from ..model import quant
from ..model.transformer import wants_column_major
from .cpu import cpu_line

# (name, out_features, in_features) of the 262M `small` preset's products, head included
SHAPES = (
    ("q/k/v/o_proj", 1024, 1024),
    ("gate_up_proj", 8192, 1024),
    ("down_proj", 1024, 4096),
    ("wq", 3072, 1024),
    ("head", 50257, 1024),
)
VARIANTS = ("f32", "split", "w8a8", "weight", "woq-bf16", "copy-gemm", "woq-f32", "dynamic")
DEFAULT_VARIANTS = "f32,split,w8a8,weight,dynamic"


def _variants(name: str, n: int, k: int) -> dict[str, Callable[[Tensor], Tensor]]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n, k, generator=g) * 0.02
    lin = nn.Linear(k, n, bias=False).requires_grad_(False)
    lin.weight.data = w.t().contiguous().t() if wants_column_major(name, w.shape) else w
    i8 = quant.Int8Linear(w, None)
    dyn = quant.Int8DynamicLinear(w, None)
    split = quant.Int8DynamicLinear(w, None, "split")

    def woq_bf16(x: Tensor) -> Tensor:
        y = torch.ops.aten._weight_int8pack_mm(x.bfloat16(), i8.qweight, i8.scale_bf16)
        return torch.as_tensor(y).float()

    def copy_gemm(x: Tensor) -> Tensor:
        return i8._copy_gemm(x.bfloat16())

    def woq_f32(x: Tensor) -> Tensor:
        return torch.as_tensor(torch.ops.aten._weight_int8pack_mm(x, i8.qweight, i8.scale))

    def w8a8(x: Tensor) -> Tensor:
        amax = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-30)
        xu = quant.to_onednn_input((x * (127.0 / amax)).round_())
        acc = quant.onednn_int8_linear(xu, split._packed, split.scale, split._zero)  # type: ignore[arg-type]
        return acc.mul_(amax / 127.0)

    return {
        "f32": lin,
        "split": split,
        "w8a8": w8a8,
        "weight": i8,
        "woq-bf16": woq_bf16,
        "copy-gemm": copy_gemm,
        "woq-f32": woq_f32,
        "dynamic": dyn,
    }


def run(rows: list[int], rounds: int, variants: list[str], budget: float) -> Iterator[str]:
    """One table line per (shape, rows): best / median ms of each variant."""
    for name, n, k in SHAPES:
        fns = _variants(name, n, k)
        for m in rows:
            x = torch.randn(m, k, generator=torch.Generator().manual_seed(1))
            calls = max(1, int(budget / (n * k * max(1, m // 8))))
            times: dict[str, list[float]] = {v: [] for v in variants}
            with torch.inference_mode():
                for _ in range(rounds):
                    for v in variants:  # interleaved: a load change hits every variant
                        fns[v](x)
                        t0 = time.perf_counter()
                        for _ in range(calls):
                            fns[v](x)
                        times[v].append((time.perf_counter() - t0) / calls * 1e3)
            cells = [f"{min(t):.2f} / {statistics.median(t):.2f}" for t in times.values()]
            yield f"| {name} {n}x{k} | {m} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="1,16", help="row counts per call, comma-separated")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"of {','.join(VARIANTS)}")
    ap.add_argument("--budget", type=float, default=3e7, help="weight values read per round")
    a = ap.parse_args(argv)
    variants = [v for v in a.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variants {bad}: use {','.join(VARIANTS)}")
    if not quant.int8_sums_exact() and {"split", "w8a8"} & set(variants):
        variants = [v for v in variants if v not in ("split", "w8a8")]
        print("# split, w8a8 left out: oneDNN's int8 sums are inexact here (no VNNI)")
    torch.set_num_threads(a.threads)
    print(f"# {cpu_line()} · torch {torch.__version__} · threads {a.threads}")
    print(f"# load average before {os.getloadavg()}; ms per call, best / median of {a.rounds}")
    print("| product | rows | " + " | ".join(variants) + " |")
    print("| --- | --- |" + " --- |" * len(variants))
    for line in run([int(r) for r in a.rows.split(",")], a.rounds, variants, a.budget):
        print(line, flush=True)
    print(f"# load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
