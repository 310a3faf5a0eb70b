"""Benchmark: `python -m swamla_tui.bench` (a script, not a test).

Builds a model with random weights and prints, from one run on one device/dtype: engine
decode tok/s single-stream at several prompt lengths, the full-recompute loop (what the
original script does) through our own forward, batched throughput, time to first token, the
bandwidth bound (copy bandwidth / weight bytes) and the matrix-product floor (one decode
step's weight products alone, at batch 1). Presets: `small` (the 262M v1 reference model,
default), `moe-1b` (the trainer's default since Dec 2025: DeltaNet + MLA, latent MoE;
only its *active* weights count towards the floor) and `g7` (moe-1b with what every 2026
model has: residual scalars and value embeddings, of which a step reads one row).

One piece at ~480 lines: every figure of a run is measured against the floors taken in the
same process (that is what makes them comparable on a shared machine), so the timing
loops, the floors and the report stay together; the mixed-length workload is its own
module (`bench_mixed`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F

from ..base.memory import reuse_freed_memory
from ..base.params import SamplingParams
from ..engine.options import EngineOptions
from ..engine.pool import CachePool
from ..engine.sampling import sample
from ..model.config import DeltaNetConfig, LayerKind, ModelConfig, MoEConfig
from ..model.fuse import OneDNNLinear, float32_cpu_layout, onednn_linear
from ..model.mla import MLAAttention
from ..model.quant import QUANTIZE_CHOICES, Int8DynamicLinear, Int8Linear, fused_modules
from ..model.shared_input import shared_inputs
from ..model.transformer import SWAMLA
from .cpu import cpu_line
from .measure import active_products, engine_run, sync


def reference_config(vocab: int = 50257, layers: int = 12) -> ModelConfig:
    kinds: list[LayerKind] = ["swa" if i % 3 < 2 else "mla" for i in range(layers)]
    return ModelConfig(
        n_layer=layers, n_embd=1024, n_head=16, n_kv_head=16, vocab_size=vocab,
        block_size=2048, layer_kinds=kinds, swa_window=256, swa_sink_size=4,
        q_lora_rank=0, kv_lora_rank=256, qk_nope_head_dim=128, qk_rope_head_dim=64,
        v_head_dim=128, mlp_hidden=4096,
    )  # fmt: skip


def moe_1b_config(vocab: int = 50257) -> ModelConfig:
    """The trainer's `--size moe-1b` at HEAD defaults (formats v2 §3, §6.3): 12 layers, C 1024,
    12 heads, DeltaNet 2 + MLA 1 per cycle, latent MoE (L 256, 128 experts of 256, top-12,
    one shared expert of 1024), per-layer MLA kv ranks from the base 256."""
    n, c = 12, 1024
    kinds: list[LayerKind] = ["deltanet" if i % 3 < 2 else "mla" for i in range(n)]
    ranks = [int(256 * (0.5 + 1.5 * i / (n - 1))) if k == "mla" else 0 for i, k in enumerate(kinds)]
    return ModelConfig(
        n_layer=n, n_embd=c, n_head=12, n_kv_head=12, vocab_size=vocab, block_size=2048,
        layer_kinds=kinds, kv_lora_rank=ranks[2], qk_nope_head_dim=128, qk_rope_head_dim=64,
        v_head_dim=128, mlp_hidden=4 * c, generation="G6", kv_ranks=ranks,
        deltanet=DeltaNetConfig(n_head=12, head_dim=c // 12, conv_kernel=4),
        moe=MoEConfig(latent=True, n_experts=128, top_k=12, n_shared=1, shared_dim=1024,
                      expert_dim=256, width=256),
    )  # fmt: skip


def g7_config(vocab: int = 50257) -> ModelConfig:
    """The trainer's 2026 default (formats G7 §2): the moe-1b shape of `moe_1b_config` with
    what every G7 model has, residual scalars and value embeddings on the even layers (MLA
    tables 50304 rows whatever the vocabulary, DeltaNet tables the vocabulary); FoPE, YaRN
    and Engram are off by default. The tables add ~0.4B parameters, of which a decode step
    reads one row each: they do not count towards the active-weight floor."""
    cfg = moe_1b_config(vocab)
    cfg.generation = "G7"
    cfg.residual_scalars = True
    cfg.ve_rows = [
        (50304 if kind == "mla" else vocab) if i % 2 == 0 else 0
        for i, kind in enumerate(cfg.layer_kinds)
    ]
    return cfg


PRESETS = {"small": reference_config, "moe-1b": moe_1b_config, "g7": g7_config}


def build_model(cfg: ModelConfig, device: torch.device, dtype: torch.dtype, window: bool) -> SWAMLA:
    torch.manual_seed(0)
    with torch.device("meta"):
        m = SWAMLA(cfg, swa_window=window)
    m = m.to_empty(device=device)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("weight") and p.ndim >= 2:
                p.normal_(0.0, 0.02)
            elif "alpha" in name:
                p.fill_(0.5)
            elif name.endswith("lambdas"):  # G7 residual scalars: resid 1, x0 a little
                p.fill_(1.0 if "resid" in name else 0.1)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
        for name, b in m.named_buffers():
            if name.endswith("expert_bias"):
                b.normal_(0.0, 0.01)
    m.lm_head.weight = m.transformer.wte.weight
    m = m.to(dtype).eval().requires_grad_(False)
    m.init_buffers(device)
    layout = float32_cpu_layout(device, dtype, EngineOptions.from_env().cpu_layout)
    colmajor = layout == "column-major"
    if colmajor:
        m.use_cpu_decode_layout()  # as `swamla_tui.load` does
    elif layout == "onednn":
        m.use_cpu_onednn_products()  # as `swamla_tui.load` does on AMD CPUs
    m.prepare(column_major=colmajor)
    if device.type == "cpu" and dtype == torch.bfloat16 and EngineOptions.from_env().cpu_layout:
        m.use_cpu_bf16_packing()  # as `swamla_tui.load` does
    if device.type == "cpu" and EngineOptions.from_env().reuse_memory:
        reuse_freed_memory()  # as `swamla_tui.load` does
    return m


def matmul_floor(model: SWAMLA, reps: int = 9) -> tuple[float, int]:
    """Seconds per decode step of the active weight products alone at batch 1, and their bytes.

    Every matrix is read where the model keeps it; the routed experts are top-k experts
    drawn afresh for each repetition and multiplied in place, one matrix-vector product
    each (as cold in the cache as when decoding, no gathered copy).
    """
    dev = model.transformer.wte.weight.device
    mats, moes = active_products(model)
    # the kernel the model's float32 products run in (oneDNN on AMD CPUs, fuse.py)
    onednn = any(isinstance(m, OneDNNLinear) for m in model.modules())
    product = onednn_linear if onednn else F.linear
    xs = [torch.randn(1, w.shape[1], dtype=w.dtype, device=dev) for w in mats]
    nbytes = sum(w.numel() * w.element_size() for w in mats)
    for m in moes:
        ex = m.experts
        per = ex.gate_up_weight[0].numel() + ex.down_weight[0].numel()
        nbytes += m.cfg.top_k * per * ex.gate_up_weight.element_size()
    times = []
    with torch.inference_mode():
        for _ in range(reps):
            picks = [
                (m.experts, torch.randperm(m.cfg.n_experts)[: m.cfg.top_k].tolist()) for m in moes
            ]
            xe = [
                (torch.randn(1, ex.d, dtype=ex.gate_up_weight.dtype, device=dev),
                 torch.randn(1, ex.f, dtype=ex.gate_up_weight.dtype, device=dev))
                for ex, _ in picks
            ]  # fmt: skip
            sync(dev)
            t0 = time.perf_counter()
            for x, w in zip(xs, mats, strict=True):
                product(x, w, None)
            for (ex, sel), (x1, x2) in zip(picks, xe, strict=True):
                for e in sel:
                    torch.mm(x1, ex.gate_up_weight[e])
                    torch.mm(x2, ex.down_weight[e])
            sync(dev)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[2:]), nbytes


def kernel_floor(model: SWAMLA, batch: int = 1, reps: int = 7) -> float:
    """Seconds per decode step of the weight products *as the model runs them* (its own
    modules: packed float16 copies in bfloat16 on CPUs without bfloat16, int8 kernels
    under `quantize`, projections sharing an input as one product) for `batch` rows, head
    included, and MLA's `wkv_b` as the absorbed decode path multiplies it (per head, into
    the query and out of the latent); products read through a `RowFusion` and routed
    experts are not included (the 262M preset has none)."""
    dev = model.transformer.wte.weight.device
    dt = model.transformer.wte.weight.dtype
    fused = fused_modules(model)
    calls: list[tuple[Callable[[torch.Tensor], object], int]] = []  # (product, input width)
    for si in shared_inputs(model.transformer.h):
        if si.fused:
            fused |= {id(m) for m in si.members()}
            calls.append((si, cast(int, si.members()[0].in_features)))
    calls += [
        (m, m.in_features)
        for n, m in model.transformer.h.named_modules()
        if isinstance(m, torch.nn.Linear | Int8Linear | Int8DynamicLinear)
        and id(m) not in fused
        and "wkv_b" not in n
    ]
    head = model.head_q if model.head_q is not None else model.lm_head
    calls.append((head, head.in_features))
    xs = [torch.randn(batch, 1, k, dtype=dt, device=dev) for _, k in calls]
    absorbed = []  # per MLA layer: [H, B, dn] x W_k [H, dn, r], [H, B, r] x W_v^T [H, r, dv]
    for at in (m for m in model.modules() if isinstance(m, MLAAttention)):
        w = at._float32_weight()
        w_k, w_vt = at._per_head(w if w is not None else at.wkv_b.weight)
        qn = torch.randn(at.h, batch, at.dn, dtype=w_k.dtype, device=dev)
        ol = torch.randn(at.h, batch, at.r, dtype=w_k.dtype, device=dev)
        absorbed.append((qn, w_k, ol, w_vt))
    times = []
    with torch.inference_mode():
        for _ in range(reps):
            sync(dev)
            t0 = time.perf_counter()
            for (m, _), x in zip(calls, xs, strict=True):
                m(x)
            for qn, w_k, ol, w_vt in absorbed:
                torch.bmm(qn, w_k)
                torch.bmm(ol, w_vt)
            sync(dev)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


def recompute_run(model: SWAMLA, prompt: list[int], new: int, params: SamplingParams) -> float:
    """The original script's loop: a full forward over the whole context for every token."""
    dev = model.transformer.wte.weight.device
    ids = torch.tensor([prompt], device=dev)
    seen = torch.zeros(1, model.cfg.vocab_size, dtype=torch.bool, device=dev)
    seen[0, ids[0]] = True
    g = torch.Generator(device=dev).manual_seed(0)
    sync(dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(new):
            logits = model(ids[:, -model.cfg.block_size :])[:, -1]
            nxt = sample(
                logits,
                seen,
                temperature=params.temperature,
                top_k=params.top_k,
                top_p=params.top_p,
                repetition_penalty=params.repetition_penalty,
                generator=g,
            )
            seen[0, nxt] = True
            ids = torch.cat((ids, nxt[:, None]), dim=1)
            _ = nxt.item()
    sync(dev)
    return new / (time.perf_counter() - t0)


def copy_bandwidth(dev: torch.device, mb: int = 512) -> float:
    """GB/s moved (read + write) by a plain tensor copy."""
    n = mb * 1024 * 1024 // 4
    src = torch.ones(n, device=dev)
    dst = torch.empty_like(src)
    times = []
    for _ in range(7):
        sync(dev)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(dev)
        times.append(time.perf_counter() - t0)
    return 2 * n * 4 / statistics.median(times[2:]) / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m swamla_tui.bench", description=__doc__)
    ap.add_argument("--preset", default="small", choices=tuple(PRESETS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--lengths", default="32,512,1024")
    ap.add_argument("--new", type=int, default=32, help="new tokens per single-stream run")
    ap.add_argument(
        "--rounds", type=int, default=1, help="repeat the single-stream lengths (best round kept)"
    )
    ap.add_argument(
        "--recompute-new",
        type=int,
        default=0,
        help="tokens for the full-recompute loop (0: 8 on CUDA, 4/2/2 on CPU)",
    )
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batch-new", type=int, default=64)
    ap.add_argument(
        "--alone", type=int, default=4, help="prompts run one at a time for the batch comparison"
    )
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--window", action="store_true", help="swa_attention=window")
    ap.add_argument("--no-graphs", action="store_true")
    ap.add_argument("--skip", default="", help="comma list of: recompute,batch,alone")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument(
        "--workload",
        default="standard",
        choices=("standard", "mixed", "routing"),
        help="mixed: only static vs continuous batching on prompts whose completions end at "
        "mixed lengths (per-prompt max_new_tokens uniform in --mixed-min..--mixed-max, "
        "seeded); --batch rows, --rounds alternating rounds of each (see bench_mixed); "
        "routing: decode tok/s with MoE recording off / on (see bench/routing.py)",
    )
    ap.add_argument("--mixed-prompts", type=int, default=32)
    ap.add_argument("--mixed-min", type=int, default=8)
    ap.add_argument("--mixed-max", type=int, default=128)
    ap.add_argument("--quantize", default=None, choices=QUANTIZE_CHOICES)
    ap.add_argument(
        "--chat-turns",
        action="store_true",
        help="only time to first token per turn of a scripted chat that ends near the "
        "context limit, with and without the prompt cache (--turns turns, --new reply "
        "tokens each; see bench_chat_turns)",
    )
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument(
        "--prefill-lengths",
        default="512,2048",
        help="time to first token of lone prompts this long, next to the prefill floor "
        "(the weight products at that many rows; see bench_prefill); empty: skip",
    )
    a = ap.parse_args(argv)

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(
        "cuda"
        if a.device == "auto" and torch.cuda.is_available()
        else ("cpu" if a.device == "auto" else a.device)
    )
    dt = {
        "auto": torch.bfloat16 if dev.type == "cuda" else torch.float32,
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
    }[a.dtype]
    graphs = dev.type == "cuda" and not a.no_graphs
    skip = set(filter(None, a.skip.split(",")))
    if a.preset != "small" and not a.recompute_new:
        skip.add("recompute")  # a full forward per token of a 1B model: minutes per length
    cfg = PRESETS[a.preset]()
    graphs = graphs and a.preset == "small"  # recurrent state: the engine decodes eagerly
    model = build_model(cfg, dev, dt, a.window)
    if a.quantize:
        model.quantize(a.quantize)
    nparam = model.num_params()
    active = model.active_params()
    wbytes = active * torch.finfo(dt).bits // 8
    pool = CachePool(model, 2048, graphs=graphs, compile=EngineOptions.from_env().compile)
    params = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1, seed=0)
    gen = torch.Generator().manual_seed(1)

    def rand(n: int) -> list[int]:
        ids: list[int] = torch.randint(0, cfg.vocab_size, (n,), generator=gen).tolist()
        return ids

    res: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_line(),
        "dtype": str(dt).removeprefix("torch."),
        "preset": a.preset,
        "params": nparam,
        "active_params": active,
        "threads": torch.get_num_threads(),
        "cuda_graphs": graphs,
        "swa_attention": "window" if a.window else "full",
        "torch": torch.__version__,
        "quantize": a.quantize,
    }
    if a.chat_turns:
        from .chat_turns import run_chat_turns

        print(f"# {a.preset} · {res['device']} · {res['dtype']} · threads {res['threads']}")
        res["chat_turns"] = run_chat_turns(model, pool, params, turns=a.turns, new=a.new)
    elif a.workload == "routing":
        from .routing import run_routing

        print(f"# {a.preset} · {res['device']} · {res['dtype']} · threads {res['threads']}")
        L = int(a.lengths.split(",")[0])
        res["routing"] = run_routing(model, pool, params, rand(L), new=a.new, rounds=a.rounds)
    if a.chat_turns or a.workload == "routing":
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(res, fh, indent=2)
        return 0
    if a.workload == "mixed":
        from .mixed import run_mixed

        print(f"# {a.preset} · {res['device']} · {res['dtype']} · threads {res['threads']}")
        res["mixed"] = run_mixed(model, pool, params, prompts=a.mixed_prompts, batch=a.batch,
                                 lo=a.mixed_min, hi=a.mixed_max, rounds=a.rounds)  # fmt: skip
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(res, fh, indent=2)
        return 0
    bw = copy_bandwidth(dev)
    res["copy_GBps"] = bw
    res["bandwidth_bound_tok_s"] = bw * 1e9 / wbytes
    print(
        f"# {a.preset} · {res['device']} · {res['dtype']} · {nparam:,} params "
        f"({active:,} active per token) · threads {res['threads']} · graphs {graphs}"
    )
    print(
        f"copy bandwidth {bw:.1f} GB/s (read+write) -> bound {res['bandwidth_bound_tok_s']:.1f} tok/s"
    )
    floor_s, floor_bytes = matmul_floor(model)
    res["floor_tok_s"] = 1.0 / floor_s
    print(
        f"matrix-product floor (active weights, batch 1): {floor_s * 1000:.1f} ms/step -> "
        f"{1.0 / floor_s:.1f} tok/s ({floor_bytes / floor_s / 1e9:.1f} GB/s of weights)",
        flush=True,
    )
    kf = kernel_floor(model)
    res["kernel_floor_tok_s"] = 1.0 / kf
    print(
        f"floor with the model's own kernels (projections + head, batch 1): {kf * 1000:.1f} "
        f"ms/step -> {1.0 / kf:.1f} tok/s",
        flush=True,
    )

    engine_run(model, [rand(16)], 8, params, pool)  # warm-up (and graph capture)
    lens = [int(x) for x in a.lengths.split(",") if x]
    for L in lens:
        engine_run(model, [rand(L)], 2, params, pool)  # first use of this prefill shape
    for L in [n for _ in range(max(1, a.rounds)) for n in lens]:
        r = engine_run(model, [rand(L)], a.new, params, pool)
        # the floor again right after: on a shared machine the load changes within a run
        r["floor_tok_s"] = 1.0 / matmul_floor(model)[0]
        r["kernel_floor_tok_s"] = 1.0 / kernel_floor(model)
        prev = res.get(f"engine_{L}")
        if prev is None or prev["decode_tok_s"] < r["decode_tok_s"]:
            res[f"engine_{L}"] = r  # the best round
        line = (
            f"prompt {L:5d}: engine {r['decode_tok_s']:8.1f} tok/s "
            f"({100 * r['decode_tok_s'] / r['floor_tok_s']:3.0f}% of the floor measured "
            f"next to it, {r['floor_tok_s']:.1f} tok/s; own kernels "
            f"{r['kernel_floor_tok_s']:.1f}) (ttft {r['ttft_s'] * 1000:7.1f} ms)"
        )
        if "recompute" not in skip and f"recompute_{L}" not in res:
            n_rc = a.recompute_new or (8 if dev.type == "cuda" else (4 if L <= 64 else 2))
            rc = recompute_run(model, rand(L), n_rc, params)
            res[f"recompute_{L}"] = rc
            line += f" | full recompute {rc:7.2f} tok/s | speed-up {r['decode_tok_s'] / rc:6.1f}x"
        print(line, flush=True)
    plens = [int(x) for x in a.prefill_lengths.split(",") if x]
    if plens:
        from .prefill import run_prefill

        res.update(run_prefill(model, pool, params, plens, rand, max(1, a.rounds)))
    if "batch" not in skip:
        g2 = torch.Generator().manual_seed(2)
        prompts = [rand(int(torch.randint(16, 49, (1,), generator=g2))) for _ in range(a.batch)]
        r = engine_run(model, prompts, a.batch_new, params, pool)
        bf = a.batch / kernel_floor(model, a.batch)
        res["batch"] = {"size": a.batch, "new": a.batch_new, **r, "floor_tok_s": bf}
        print(
            f"batch {a.batch} x {a.batch_new} new: {r['total_tok_s']:.1f} tok/s aggregate "
            f"(decode {r['decode_tok_s']:.1f}; floor at batch {a.batch} next to it: "
            f"{bf:.1f} tok/s)",
            flush=True,
        )
        if "alone" not in skip and a.alone:
            t0 = time.perf_counter()
            n = 0.0  # the steps of each run (engine_run's figures are floats)
            for pr in prompts[: a.alone]:
                r1 = engine_run(model, [pr], a.batch_new, params, pool)
                n += r1["steps"]
            alone = n / (time.perf_counter() - t0)
            res["alone_tok_s"] = alone
            print(
                f"same prompts one at a time ({a.alone} of them): {alone:.1f} tok/s -> batched "
                f"{res['batch']['total_tok_s'] / alone:.1f}x",
                flush=True,
            )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
