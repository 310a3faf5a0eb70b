"""Perplexity of every checkpoint of a training run (``--perplexity FILE --checkpoint RUN``).

A run folder (`checkpoint_*.pt`) or a Hub repo / Hub-layout folder (`checkpoint_tokens_*`,
`base/…`, `instruct/…`) is listed from names only (`swamla_tui.checkpoint.sources.survey`),
so nothing is downloaded or opened before its turn. The checkpoints of one family are
scored, base by default or instruct with ``--instruct`` (each falls back to the other
when the run has none): a loss curve mixing pretraining and instruction tuning would
compare different things. They are scored in training order (most tokens last), one
loaded at a time and released before the next; with ``--output`` each row is journalled
as it finishes (`swamla_tui.base.sweep.SweepJournal`), so a rerun skips them.

A checkpoint that fails to load or score is a note and the sweep goes on; it is not
journalled, so the next run tries it again.
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from ..base.errors import SwamlaError, one_line
from ..base.scoring import read_text_file
from ..base.sweep import (
    SweepJournal,
    SweepRow,
    format_sweep,
    plot_sweep,
    sweep_journal_path,
    write_sweep,
)
from ..checkpoint.selection import Candidate, Selection
from ..checkpoint.sources import survey
from .perplexity import perplexity, stderr_progress

__all__ = ["run_sweep", "sweep_candidates", "text_digest"]

Loader = Callable[[Callable[[str], None]], Any]


def sweep_candidates(
    source: str, select: Selection | None = None, *, lister: Callable[..., Any] = survey
) -> list[Candidate]:
    """The checkpoints a sweep of `source` scores, in training order; [] for one file."""
    cands, _ = lister(source, None, select)
    instruct = bool(select and select.instruct)
    mine = [c for c in cands if c.is_instruct == instruct] or list(cands)
    return sorted(mine, key=_order)


def _order(c: Candidate) -> tuple[float, int, str]:
    rank = c.rank_tokens
    return (-1.0 if rank is None else rank, -1 if c.step is None else c.step, c.path)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _meta_number(meta: Mapping[str, Any], key: str) -> float | None:
    v = meta.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def run_sweep(
    loader_of: Callable[[str], Loader],
    cands: Sequence[Candidate],
    path: str | os.PathLike[str],
    *,
    settings: Mapping[str, Any],
    stride: int | None = None,
    batch_size: int | None = None,
    output: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    color: bool | None = None,
    windows: str = "strided",
) -> list[SweepRow]:
    """Score every candidate (`loader_of(candidate.path)` loads it), print the table and the
    plot, write ``--output`` (JSON or CSV). `settings` says what must match for a
    journalled row to count (the text's digest is added here)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    text = read_text_file(path)
    if stride is not None and stride < 1:
        raise SwamlaError(f"--stride must be >= 1, got {stride}")
    journal = None
    if output:
        keys = {**settings, "text_sha256": text_digest(text), "stride": stride}
        if windows != "strided":  # (journals written before --windows stay valid)
            keys["windows"] = windows
        journal = SweepJournal(sweep_journal_path(output), keys, overwrite=overwrite)
        skip = [c.path for c in cands if c.path in journal.done]
        if skip:
            print(f"… {len(skip)} of {len(cands)} checkpoints already scored", file=err)
    rows: list[SweepRow] = []
    failed = 0
    for i, cand in enumerate(cands, 1):
        if journal is not None and cand.path in journal.done:
            rows.append(journal.done[cand.path])
            continue
        label = f"[{i}/{len(cands)}] {cand.path}"
        try:
            row = _score_one(
                loader_of(cand.path), cand, text, label, stride, batch_size, err, windows
            )
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one bad checkpoint must not end the sweep
            failed += 1
            print(f"note: {cand.path}: skipped ({one_line(e)})", file=err)
            continue
        if journal is not None:
            journal.append(row)
        rows.append(row)
    if not rows:
        raise SwamlaError(f"none of the {len(cands)} checkpoints could be scored")
    print(format_sweep(rows), file=out)
    if len(rows) > 1:
        print(file=out)
        print(plot_sweep(rows, color=_is_tty(out) if color is None else color), file=out)
    if failed:
        print(f"note: {failed} of {len(cands)} checkpoints skipped (see above)", file=err)
    if output:
        write_sweep(rows, output)
    return rows


def _score_one(
    load: Loader,
    cand: Candidate,
    text: str,
    label: str,
    stride: int | None,
    batch_size: int | None,
    err: IO[str],
    windows: str = "strided",
) -> SweepRow:
    lm: Any = load(lambda s: print(f"… {label}: {s}", file=err))
    try:
        for n in lm.notices:
            print(f"note: {cand.path}: {n}", file=err)
        bar = stderr_progress(label, err)
        r = perplexity(
            lm, text, stride=stride, batch_size=batch_size, progress=bar, windows=windows
        )
        meta = getattr(lm, "meta", {}) or {}
        tokens = cand.rank_tokens if cand.rank_tokens is not None else None
        step = cand.step
        if tokens is None:
            tokens = _meta_number(meta, "total_tokens")
        if step is None:
            s = _meta_number(meta, "step")
            step = None if s is None else int(s)
        return SweepRow(
            checkpoint=cand.path,
            training_tokens=tokens,
            step=step,
            tokens=r.tokens,
            loss=r.loss,
            perplexity=r.perplexity,
            bits_per_byte=r.bits_per_byte,
            seconds=r.seconds,
        )
    finally:
        del lm
        _release()


def _release() -> None:
    """Free the checkpoint before the next one loads (one in memory at a time)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
