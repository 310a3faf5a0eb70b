"""Where a CPU decode step's time goes (issue 27 item 1: "profile first; say where the rest
goes"), for one dtype / quantization / row count of the 262M benchmark model:

1. the engine's decode step (`Generation`, sampling on), median of the timed steps;
2. the own-kernel floor (`bench.run.kernel_floor`: the weight products as the model runs
   them) measured right after, and the ratio;
3. a `torch.profiler` run of the same steps, the ops' own (self) time by kind: weight
   products, attention (SWA's fused kernel; MLA's absorbed batched products, which hold
   its `wkv_b` products as well as the attention over the latent cache), cache writes,
   sampling, every other op; and the profiled step's time outside any op (Python, and the
   profiler's own cost);
4. the fixed cost of the step's op sequence: the same layer layout at tiny widths (C 64,
   vocabulary 512), where the data is negligible and what remains is per-op cost.

    PYTHONPATH=. python scripts/decode_breakdown.py --rows 16 --quantize int8
    PYTHONPATH=. python scripts/decode_breakdown.py --rows 1 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from dataclasses import replace

import torch
from torch.profiler import ProfilerActivity, profile

from swamla_tui.base.params import SamplingParams
from swamla_tui.bench.cpu import cpu_line
from swamla_tui.bench.run import build_model, kernel_floor, reference_config
from swamla_tui.engine.decode_loop import Generation
from swamla_tui.model.config import ModelConfig
from swamla_tui.model.transformer import SWAMLA

KINDS: dict[str, tuple[str, ...]] = {
    "weight products": (
        "aten::mm", "aten::addmm", "quantized::linear_dynamic", "onednn::qlinear_pointwise",
        "mkldnn::_linear_pointwise", "aten::_weight_int8pack_mm",
    ),
    "SWA attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
    "MLA absorbed products": ("aten::bmm",),
    "cache writes": ("aten::index_copy_",),
    "sampling": (
        "aten::topk", "aten::sort", "aten::cumsum", "aten::exponential_", "aten::nonzero",
        "aten::argmax", "aten::scatter_", "aten::gather", "aten::multinomial",
    ),
}  # fmt: skip


def kind_of(op: str) -> str:
    return next((k for k, ops in KINDS.items() if op in ops), "other ops")


def steps(model: SWAMLA, rows: int, vocab: int, prompt: int) -> Generation:
    params = SamplingParams(
        temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1, max_new_tokens=4096, seed=0
    )
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, vocab, (prompt,), generator=g).tolist() for _ in range(rows)]
    return Generation(model, prompts, params, max_length=2048, eos_id=None)


def build(cfg: ModelConfig, a: argparse.Namespace) -> SWAMLA:
    m = build_model(cfg, torch.device("cpu"), getattr(torch, a.dtype), False)
    if a.quantize:
        m.quantize(a.quantize)
    return m


def timed_steps(model: SWAMLA, a: argparse.Namespace, vocab: int, n: int) -> list[float]:
    it = iter(steps(model, a.rows, vocab, a.prompt))
    for _ in range(4):
        next(it)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        next(it)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=32, help="prompt tokens per row")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (after 4 warm-up)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--quantize", default=None, help="an int8 kind")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# {cpu_line()} · threads {a.threads}", flush=True)
    rows = f"{a.rows} row{'s' if a.rows != 1 else ''}"
    what = f"{a.dtype}{', ' + a.quantize if a.quantize else ''}, {rows}"
    cfg = reference_config()
    model = build(cfg, a)
    step = statistics.median(timed_steps(model, a, cfg.vocab_size, a.steps))
    floor = kernel_floor(model, a.rows) * 1000
    print(f"{what}: decode step {step:.1f} ms; own-kernel floor {floor:.1f} ms "
          f"({100 * floor / step:.0f}% of the step)")  # fmt: skip

    it = iter(steps(model, a.rows, cfg.vocab_size, a.prompt))
    for _ in range(4):
        next(it)
    n = max(5, a.steps // 2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(n):
            next(it)
        wall = (time.perf_counter() - t0) * 1000 / n
    self_ms: dict[str, float] = defaultdict(float)
    calls = 0
    for e in prof.key_averages():
        self_ms[kind_of(e.key)] += e.self_cpu_time_total / 1000 / n
        calls += e.count
    inside = sum(self_ms.values())
    print(f"profiled: {wall:.1f} ms a step, {calls / n:.0f} ops a step")
    for k in (*KINDS, "other ops"):
        print(f"  {k:24s} {self_ms[k]:7.2f} ms  ({100 * self_ms[k] / wall:4.1f}%)")
    out = wall - inside
    print(f"  {'outside any op':24s} {out:7.2f} ms  ({100 * out / wall:4.1f}%)")

    del model, prof
    tiny = replace(
        reference_config(vocab=512), n_embd=64, kv_lora_rank=16, qk_nope_head_dim=4,
        qk_rope_head_dim=4, v_head_dim=4, mlp_hidden=64,
    )  # fmt: skip
    fixed = min(statistics.median(timed_steps(build(tiny, a), a, 512, 50)) for _ in range(2))
    print(f"the same op sequence at tiny widths (C 64, vocabulary 512): {fixed:.1f} ms a step "
          f"({100 * fixed / step:.0f}% of the step)")  # fmt: skip


if __name__ == "__main__":
    main()
