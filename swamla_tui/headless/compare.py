"""A/B batch without a screen: ``--mode batch --compare B [--output FILE]``.

Both models stay loaded: the first loads, then the second (the CLI's loader for it
refuses, before loading, when the two would not fit in memory), then `check_compatible`
refuses a different vocabulary or tokenizer. `swamla_tui.batch.compare.run_compare` runs each
chunk on A, then on B, with the same sampling settings and seed; every prompt gives one
record with both completions (`COMPARE_FIELDS`), to FILE (.jsonl, .csv, .md) or to stdout
as JSONL, in input order. Progress goes to stderr, counted in prompt-model pairs.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from ..batch.compare import COMPARE_FIELDS, check_compatible, compare_rows, run_compare
from ..batch.job import BatchJob, PromptFinished
from ..batch.results import write_results
from ..protocols import Loader, Model
from .run import Progress, check_output, output_lock

__all__ = ["run_headless_compare"]


def _load(loader: Loader, label: str, err: TextIO) -> Model:
    lm = loader(lambda text: print(f"… {label}: {text}", file=err, flush=True))
    for notice in lm.notices:
        print(f"note: {label}: {notice}", file=err)
    return lm


def run_headless_compare(
    job: BatchJob,
    loader_a: Loader,
    loader_b: Loader,
    *,
    before_second: Callable[[Model, str], None] | None = None,
    compare_source: str = "B",
    err: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """Run every prompt of `job` on both models; 0 when every prompt got both answers,
    1 when some did not, 130 when interrupted (the finished prompts written).

    `before_second(a, compare_source)` runs between the two loads (the CLI's memory check).
    """
    err = err if err is not None else sys.stderr
    out = out if out is not None else sys.stdout
    if job.output:
        check_output(job.output)
    with output_lock(job.output):  # one run per output, as a plain batch run
        return _compare(job, loader_a, loader_b, before_second, compare_source, err, out)


def _compare(
    job: BatchJob,
    loader_a: Loader,
    loader_b: Loader,
    before_second: Callable[[Model, str], None] | None,
    compare_source: str,
    err: TextIO,
    out: TextIO,
) -> int:
    a = _load(loader_a, "A", err)
    if before_second is not None:
        before_second(a, compare_source)
    b = _load(loader_b, "B", err)
    check_compatible(a, b, names=(f"A ({a.source})", f"B ({b.source})"))
    batch_size = job.batch_size or min(a.default_batch_size(), b.default_batch_size())
    n = len(job.prompts)
    print(
        f"… Comparing A and B on {n} prompt{'s' if n != 1 else ''} "
        f"in batches of {batch_size} → {job.output or 'stdout'}",
        file=err,
        flush=True,
    )
    rows = compare_rows(job.prompts)
    progress = Progress(2 * n, err)
    cancel = threading.Event()
    written = 0
    interrupted = False
    try:
        for side, event in run_compare(
            a, b, job.prompts, params=job.params, batch_size=batch_size, cancel=cancel
        ):
            if not isinstance(event, PromptFinished):
                continue
            row = rows[event.index].side(side)
            row.apply(event.outcome)
            progress.advance(row.new_tokens or 0)
            while not job.output and written < n and rows[written].has_result:
                rec = {k: rows[written].record()[k] for k in COMPARE_FIELDS}
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                out.flush()
                written += 1
    except KeyboardInterrupt:
        cancel.set()
        interrupted = True
    progress.finish()
    finished = [r.record() for r in rows if r.has_result]
    if job.output:
        write_results(finished, job.output, COMPARE_FIELDS)
    answered = sum(1 for r in rows if r.answered)
    where = f", written to {job.output}" if job.output else ""
    if interrupted:
        print(f"swamla-tui: interrupted: {answered} of {n} prompts compared{where}", file=err)
        return 130
    elapsed = time.perf_counter() - progress.t0
    print(f"… Done: {answered}/{n} prompts compared in {elapsed:.1f} s{where}", file=err)
    return 0 if answered == n else 1
