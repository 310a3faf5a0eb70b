"""Cost of recording per-token log-probabilities (the inspector) on single-stream decode.

Builds the 262M reference model (random weights, as `python -m swamla_tui.bench`) and
decodes one stream `--runs` times with recording off and on, interleaved (off, on, off,
on, ...) in one process so both see the same machine load; prints the median decode
tok/s of each and the relative cost.

    /work/venv/bin/python scripts/measure_logprobs.py                 # CPU, float32
    /work/venv/bin/python scripts/measure_logprobs.py --device cuda   # on a GPU (eager)
    /work/venv/bin/python scripts/measure_logprobs.py --threads 1     # one CPU thread
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from swamla_tui.base.params import SamplingParams
from swamla_tui.bench.run import build_model, reference_config, sync
from swamla_tui.engine.decode_loop import Generation
from swamla_tui.engine.pool import CachePool


def decode_tok_s(model, pool, prompt, params, logprobs):  # type: ignore[no-untyped-def]
    dev = model.transformer.wte.weight.device
    gen = Generation(
        model, [prompt], params, max_length=2048, eos_id=None,
        use_graph=pool.graphs, cache_pool=pool, logprobs=logprobs,
    )  # fmt: skip
    first = None
    n = 0
    for _ in gen:
        if first is None:
            sync(dev)
            first = time.perf_counter()
        n += 1
    sync(dev)
    assert first is not None
    assert (len(gen.rows[0].logprobs) == n) == bool(logprobs)
    return (n - 1) / (time.perf_counter() - first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads > 0:  # on a shared, oversubscribed CPU, 1 avoids thread-pool barrier stalls
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    model = build_model(reference_config(), dev, getattr(torch, a.dtype), window=False)
    # graphs off for both arms: recording decodes eagerly, so this isolates its own cost
    pool = CachePool(model, 2048, graphs=False)
    prompt = torch.randint(0, 50257, (a.prompt,), generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1,
                            max_new_tokens=a.new, seed=0)  # fmt: skip
    ids = prompt.tolist()
    decode_tok_s(model, pool, ids, params, None)  # warm-up
    off, on = [], []
    for _ in range(a.runs):
        off.append(decode_tok_s(model, pool, ids, params, None))
        on.append(decode_tok_s(model, pool, ids, params, a.k))
    m_off, m_on = statistics.median(off), statistics.median(on)
    print(f"device {a.device} {a.dtype}, threads {torch.get_num_threads()}, "
          f"prompt {a.prompt}, new {a.new}, runs {a.runs}, k {a.k}")  # fmt: skip
    print("off tok/s:", " ".join(f"{x:.2f}" for x in off), f"median {m_off:.2f}")
    print("on  tok/s:", " ".join(f"{x:.2f}" for x in on), f"median {m_on:.2f}")
    print(f"cost: {100 * (1 - m_on / m_off):+.1f}% (median on vs off)")
    # the recording alone, on one step's logits (less exposed to machine noise)
    from swamla_tui.engine.logprobs import record_logprobs

    logits = torch.randn(1, 50257, device=dev) * 3
    seen = torch.zeros(1, 50257, dtype=torch.bool, device=dev)
    seen[0, ids] = True
    chosen = logits.argmax(dim=-1)
    # the top-k path (these settings) and the general [B, V] path (top-k off: full sort)
    for label, p in (("top-k path", params), ("general path", params.copy(top_k=0))):
        times = []
        for _ in range(50):
            sync(dev)
            t0 = time.perf_counter()
            record_logprobs(logits, seen, chosen, p, a.k)
            sync(dev)
            times.append(time.perf_counter() - t0)
        rec_ms = 1000 * statistics.median(times)
        print(f"record_logprobs alone, {label}: {rec_ms:.2f} ms/step (median of 50); that is "
              f"{100 * rec_ms / (1000 / m_off):.1f}% of one decode step at {m_off:.2f} tok/s")  # fmt: skip


if __name__ == "__main__":
    main()
