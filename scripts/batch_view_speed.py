"""Batch view against headless on the same prompts: tokens per second of both.

Issue 22 saw a 20-prompt, batch-16 run take 1:26 in the batch view and 17.6 s headless
(on a loaded machine). This runs the same prompts, settings and batch size through
`run_headless` and through the batch view (the Textual app without a terminal, Pilot's
`run_test`), one after the other in one process, and prints the new tokens, seconds and
tokens/s of each and their ratio. Greedy with a fixed seed, so both generate the same
tokens. Timings on a shared machine are noisy: run it twice, on a quiet one if you can.

    python scripts/batch_view_speed.py [--checkpoint PATH] [--prompts 20] [--batch_size 16]
        [--max_new_tokens 64] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import resource
import time
from pathlib import Path
from typing import Any

from textual.app import App

import swamla_tui
from swamla_tui.base.params import SamplingParams
from swamla_tui.batch.job import BatchJob
from swamla_tui.batch.prompts import DEFAULT_PROMPTS
from swamla_tui.demo import DEMO_DIR
from swamla_tui.headless.run import run_headless
from swamla_tui.ui.screens.batch import BatchScreen


def prompts(n: int) -> list[str]:
    base = list(DEFAULT_PROMPTS)
    return [f"{base[i % len(base)]} ({i + 1})" for i in range(n)]


def headless(
    lm: Any, texts: list[str], params: SamplingParams, batch_size: int
) -> tuple[int, float]:
    job = BatchJob(
        prompts=texts, params=params, batch_size=batch_size, output=None, overwrite=False
    )
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    rc = run_headless(job, lambda _progress: lm, err=err, out=out)
    seconds = time.perf_counter() - t0
    assert rc == 0, err.getvalue()[-500:]
    import json

    tokens = sum(json.loads(line)["new_tokens"] for line in out.getvalue().splitlines())
    return tokens, seconds


class _ViewApp(App[None]):
    def __init__(self, screen: BatchScreen) -> None:
        super().__init__()
        self.batch = screen

    def on_mount(self) -> None:
        self.push_screen(self.batch)


async def _view(
    lm: Any, texts: list[str], params: SamplingParams, batch_size: int
) -> tuple[int, float]:
    screen = BatchScreen(lm=lm, params=params.copy(), prompts=texts, batch_size=batch_size)
    app = _ViewApp(screen)
    async with app.run_test(size=(120, 36)):
        t0 = time.perf_counter()
        while not screen.running and screen.run.done == 0:  # the run starts on mount
            await asyncio.sleep(0.005)
        while screen.running:  # plain sleeps: pilot.pause would add work to the UI loop
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - t0
    # the run's own clock (first batch started -> last result shown): the screen's mount
    # and first paint are not part of the run; `wall` (printed too) includes them
    seconds = screen.run.elapsed if screen.run.elapsed is not None else wall
    tokens = sum(r.new_tokens or 0 for r in screen.rows)
    assert all(r.status == "done" for r in screen.rows), [r.status for r in screen.rows]
    return tokens, seconds


def _cpu() -> float:
    """CPU seconds of this process (all threads): steadier than wall time on a busy machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(Path(DEMO_DIR)))
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--max_new_tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    lm = swamla_tui.load(args.checkpoint, device="cpu")
    texts = prompts(args.prompts)
    params = SamplingParams(temperature=0.0, top_k=1, max_new_tokens=args.max_new_tokens, seed=0)
    print(
        f"{args.checkpoint}: {len(texts)} prompts, batch {args.batch_size}, "
        f"max_new_tokens {args.max_new_tokens}"
    )
    headless(lm, texts[:2], params, args.batch_size)  # warm-up (first-call allocations)
    for r in range(args.repeat):
        c0 = _cpu()
        ht, hs = headless(lm, texts, params, args.batch_size)
        c1 = _cpu()
        vt, vs = asyncio.run(_view(lm, texts, params, args.batch_size))
        c2 = _cpu()
        print(
            f"run {r + 1}: headless {ht} tokens in {hs:.2f} s = {ht / hs:.1f} tok/s "
            f"(cpu {c1 - c0:.2f} s) | view {vt} tokens in {vs:.2f} s = {vt / vs:.1f} tok/s "
            f"(cpu {c2 - c1:.2f} s, app start and end included) | view/headless "
            f"{(vt / vs) / (ht / hs):.2f}"
        )


if __name__ == "__main__":
    main()
