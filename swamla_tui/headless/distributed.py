"""Batch runs over many processes and machines with torchrun (torch.distributed).

``torchrun --nproc_per_node N -m swamla_tui --mode batch --prompts_file F --output O``
starts N copies of the CLI; torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) tells each one its place, and
`cli.main` hands batch mode to `run_distributed` when ``WORLD_SIZE`` > 1. Multi-node runs
use torchrun's usual rendezvous flags (``--nnodes``, ``--node_rank``, ``--rdzv_*``).

- The process group uses NCCL when the ranks run on GPUs and gloo on CPUs; each rank
  loads the model on its own device (``cuda:LOCAL_RANK``, or the CPU).
- Rank 0 alone reads the journal of the output (`swamla_tui.batch.journal`), so resume works
  across ranks: it broadcasts the rows still to do, and the ranks take every N-th of
  them (an interleaved shard, so that long and short prompts spread evenly).
- Each rank generates in a worker thread; the main thread exchanges the finished rows
  about twice a second (``all_gather_object`` over a gloo group, CPU only, so it never
  competes with the GPU work). Rank 0 journals them at once, shows the one progress
  display and writes the output in input order when every rank is done.
- Ctrl+C or SIGTERM on any rank stops every rank after its rows in flight: signals only
  set a flag here (an exception inside a collective would leave the others waiting).
- A rank that fails (model load, generation) stops the run; rank 0 reports it in one
  line and keeps every row already finished.

The coordination is the PyTorch ecosystem's own (torchrun + torch.distributed); there is
no process pool of our own.
"""

from __future__ import annotations

import io
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..base.errors import SwamlaError, one_line
from ..batch.job import BatchJob, PromptFinished, run_chunks
from ..protocols import Loader, Model
from .run import ResultSink, Terminated, announce, check_output, output_lock

__all__ = ["RankInfo", "rank_device", "rank_info", "run_distributed", "torchrun_world"]

TICK = 0.5
"""Seconds between exchanges of finished rows."""


@dataclass(frozen=True)
class RankInfo:
    """This process's place in a torchrun job (from its environment)."""

    rank: int
    world: int
    local_rank: int


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def torchrun_world() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when not under torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank_info() -> RankInfo | None:
    """This rank's place, or None when the process is not one of several."""
    world = torchrun_world()
    if world <= 1:
        return None
    rank = _env_int("RANK", -1)
    if not 0 <= rank < world:
        raise SwamlaError(f"WORLD_SIZE is {world} but RANK is not set to 0..{world - 1}")
    return RankInfo(rank, world, max(0, _env_int("LOCAL_RANK", 0)))


def rank_device(device: str) -> str:
    """The device this rank loads on: ``cuda:LOCAL_RANK`` for CUDA, as given otherwise.

    ``auto`` means that GPU when CUDA is available and the CPU when not.
    """
    info = rank_info() if torchrun_world() > 1 else None
    if info is None or device not in ("auto", "cuda"):
        return device
    if device == "auto":
        import torch

        if not torch.cuda.is_available():
            return "cpu"
    return f"cuda:{info.local_rank}"


@dataclass
class _Stop:
    """Set by a signal handler: which one arrived first."""

    signal: int | None = None

    def exception(self) -> KeyboardInterrupt | None:
        if self.signal is None:
            return None
        return Terminated() if self.signal == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def _signals_to_flag(stop: _Stop) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` instead of raising (see the module's notes)."""

    def handler(signum: int, frame: object) -> None:
        if stop.signal is None:
            stop.signal = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class _Worker:
    """One rank's generation in a thread: finished rows go to `results` as records."""

    lm: Model
    job: BatchJob
    shard: list[int]
    batch_size: int
    cancel: threading.Event = field(default_factory=threading.Event)
    results: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="swamla-rank-worker", daemon=True).start()

    def _run(self) -> None:
        rows = self.job.rows()
        try:
            for event in run_chunks(
                self.lm,
                self.job.prompts,
                self.shard,
                params=self.job.params,
                batch_size=self.batch_size,
                cancel=self.cancel,
            ):
                if isinstance(event, PromptFinished):
                    row = rows[event.index]
                    row.apply(event.outcome)
                    if row.final:
                        self.results.put(row.record() | {"truncated": row.truncated})
        except BaseException as exc:  # noqa: BLE001 - reported to rank 0, never lost
            self.error = one_line(exc)
        finally:
            self.done.set()

    def collect(self, seconds: float) -> list[dict[str, Any]]:
        """The records finished so far, waiting up to `seconds` for the first."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while True:
            try:
                out.append(self.results.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
            while not self.results.empty():
                out.append(self.results.get_nowait())
            if self.done.is_set() or time.monotonic() >= deadline:
                break
        return out


def _backend(device: str) -> str:
    import torch
    import torch.distributed as dist

    if device != "cpu" and torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def run_distributed(
    job: BatchJob, loader: Loader, *, device: str = "auto", err: TextIO | None = None
) -> int:
    """This rank's part of a torchrun batch run; returns its exit status.

    Rank 0 returns what `run_headless` would (0, 1, 130, 143) and raises `SwamlaError`
    when a rank failed; the other ranks return 0, or 1 when they failed themselves.
    """
    import torch
    import torch.distributed as dist

    info = rank_info()
    assert info is not None, "run_distributed needs torchrun's environment"
    lead = info.rank == 0
    err = err if err is not None else sys.stderr
    say = err if lead else io.StringIO()  # one progress display: rank 0's
    backend = _backend(device)
    if backend == "nccl":
        gpus = torch.cuda.device_count()
        if info.local_rank >= gpus:  # torchrun then stops the other ranks
            raise SwamlaError(
                f"rank {info.rank} has LOCAL_RANK {info.local_rank} but this machine has "
                f"{gpus} GPU(s): use --nproc_per_node {gpus} or --device cpu"
            )
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend)
    locks = ExitStack()  # rank 0's lock on the output, held until the run ends
    try:
        group = dist.new_group(backend="gloo") if backend == "nccl" else None

        def everyone(payload: Any) -> list[Any]:
            gathered: list[Any] = [None] * info.world
            dist.all_gather_object(gathered, payload, group=group)
            return gathered

        # 1. every rank loads its model; rank 0 checks the output first
        lm: Model | None = None
        failure: str | None = None
        try:
            if lead and job.output:
                check_output(job.output)
                locks.enter_context(output_lock(job.output))  # one run per output
            lm = loader(lambda text: print(f"… {text}", file=say, flush=True))
        except Exception as exc:  # noqa: BLE001 - reported by rank 0 in one line
            failure = one_line(exc)
        _raise_failures(everyone(failure), lead)
        assert lm is not None
        for notice in lm.notices:
            print(f"note: {notice}", file=say)

        # 2. rank 0 resumes from the journal and hands out the rows to do
        sink = ResultSink(job, lm, say, sys.stdout) if lead else None
        plan: list[Any] = [None, None]
        if sink is not None:
            try:
                plan[0] = sink.start()
            except SwamlaError as exc:
                plan[1] = str(exc)
        dist.broadcast_object_list(plan, src=0, group=group)
        if plan[1] is not None:
            if lead:
                raise SwamlaError(plan[1])
            return 1
        todo: list[int] = plan[0]
        batch_size = job.batch_size or lm.default_batch_size()
        if lead:
            announce(say, len(todo), batch_size, job.output)
            print(
                f"… {info.world} ranks ({backend}), about {-(-len(todo) // info.world)} each",
                file=say,
            )

        # 3. generate; exchange finished rows until every rank is done
        worker = _Worker(lm, job, todo[info.rank :: info.world], batch_size)
        stop = _Stop()
        stopped: KeyboardInterrupt | None = None
        errors: list[str] = []
        with _signals_to_flag(stop):
            worker.start()
            while True:
                records = worker.collect(TICK)
                finished = worker.done.is_set() and worker.results.empty()
                mine = (records, finished, stop.signal, worker.error)
                gathered = everyone(mine)
                for rank, (recs, _, sig, error) in enumerate(gathered):
                    if sink is not None:
                        for rec in recs:
                            row = sink.rows[rec["index"]]
                            row.restore(rec)
                            sink.take(row)
                    if sig is not None and stop.signal is None:
                        stop.signal = sig
                    if error and not any(e.startswith(f"rank {rank}:") for e in errors):
                        errors.append(f"rank {rank}: {error}")
                if stop.signal is not None or errors:
                    worker.cancel.set()
                if all(g[1] for g in gathered):
                    break
        stopped = stop.exception()
        if sink is None:
            return 1 if worker.error else 0
        status = sink.close(stopped)
        if errors:
            raise SwamlaError("; ".join(errors))
        return status
    finally:
        locks.close()
        dist.destroy_process_group()


def _raise_failures(failures: list[str | None], lead: bool) -> None:
    """Every rank stops when one failed; rank 0 says which (one line)."""
    bad = [f"rank {r}: {msg}" for r, msg in enumerate(failures) if msg]
    if not bad:
        return
    if lead:
        raise SwamlaError("; ".join(bad))
    raise SystemExit(1)
