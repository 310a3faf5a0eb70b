"""Perplexity of a text: sliding windows scored by batched prefill (no decoding).

The evaluation rule (the usual strided one, as in Hugging Face's perplexity guide and
lm-evaluation-harness's rolling log-likelihood):

- The text is tokenized without special tokens and, when the tokenizer has an EOS token,
  that token is put in front as unscored context (training streams separate documents
  with EOS, so it stands for "a document starts here"). Every token of the text is then
  scored, and bits per byte covers every byte of the file. Without an EOS token the first
  token has no context and is not scored.
- With ids `x[0..N)`, window length `L = lm.max_length` and stride `S` (default `L // 2`;
  `1 <= S < L`, so a window's first target always has context), window `k` covers `x[k*S : min(k*S + L, N))`; windows stop at the
  first one that reaches `N`.
- Window `k` scores the targets `t` from the end of window `k-1` (from 1 for the first
  window) to its own end, each from the logits at `t - 1`: the context of `x[t]` is
  `x[k*S : t]`. So each token is scored exactly once, with at least `min(t, L - S)`
  tokens of left context. Windows run as a batch of plain full forwards (right-padded;
  padding after the last real token cannot change a causal model's earlier logits); a
  window is fed `x[begin : end - 1]`, as the last id is only a target.

Window modes (`windows=`, the CLI's ``--windows``):

- ``strided`` (the default): the rule above.
- ``rolling``: lm-evaluation-harness's ``loglikelihood_rolling`` plan (its
  ``get_rolling_token_windows`` with ``context_len=1``, then ``make_disjoint_window``), so
  that our figures equal its ``word_perplexity``/``bits_per_byte`` inputs exactly. With
  `x[0]` the prefix (EOS) and `N = len(x) - 1` tokens to score: the first window predicts
  targets `1..min(L, N)` from `x[0:min(L, N)]`; each later window predicts the next
  `min(L, N - done)` targets and is fed the `L` ids that end just before its last target,
  so targets never overlap, a full middle window has one id of context for its first
  target, and the last window gets as much context as fits.

Figures: `tokens` = scored tokens, `loss` = their mean negative log-likelihood in nats,
`perplexity = exp(loss)`, `bits_per_byte = loss * tokens / ln 2 / bytes`, where `bytes`
is the UTF-8 size of the scored text (the whole text when an EOS prefix is used, else the
text after the first token). Bits per byte compares checkpoints with different
tokenizers; perplexity per token does not.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..base.errors import SwamlaError, one_line
from ..base.experts import format_summary, summarise, write_summary
from ..base.paths import require_writable_target
from ..base.scoring import (
    KLSummary,
    PerplexityResult,
    TextFileError,
    format_kl,
    format_results,
    read_text_file,
)
from .kl import KLComparer, KLRecorder, recorder_for

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..engine.routing import RouteTally
    from .loaded_model import LoadedModel

Progress = Callable[[int, int], None]  # (scored tokens done, scored tokens in all)
Sink = Callable[["torch.Tensor", "torch.Tensor"], None]
"""Sees every scored row in target order: (float32 logits [n, V], target ids [n]); the KL
comparison (`swamla_tui.runtime.kl`) keeps or compares the distributions through it."""


class PerplexityError(SwamlaError):
    """Perplexity cannot be computed with these settings (stride, empty text, no tokenizer)."""


class PerplexityCancelled(SwamlaError):
    """The computation was cancelled (the `cancel` event was set)."""


# ------------------------------------------------------------------------------ windows
@dataclass(frozen=True)
class Window:
    begin: int  # first id fed to the model
    end: int  # one past the last id fed
    first: int  # first scored target; targets first..end-1


def plan_windows(n: int, length: int, stride: int) -> list[Window]:
    """The windows of the rule in the module docstring, for `n` ids."""
    if length < 2:
        raise PerplexityError(f"the window must hold at least 2 tokens, not {length}")
    if not 1 <= stride < length:
        raise PerplexityError(
            f"stride must be between 1 and {length - 1} (the window is {length}), not {stride}"
        )
    out: list[Window] = []
    prev_end = 1  # target 0 has no context
    begin = 0
    while prev_end < n:
        end = min(begin + length, n)
        if end > prev_end:
            out.append(Window(begin, end, prev_end))
            prev_end = end
        begin += stride
    return out


def plan_rolling(n: int, length: int) -> list[Window]:
    """lm-eval's rolling windows (module docstring, ``rolling``) for `n` ids, `x[0]` the prefix."""
    if length < 1:
        raise PerplexityError(f"the window must hold at least 1 token, not {length}")
    out: list[Window] = []
    done = min(length, n - 1)  # targets 1..done
    if done >= 1:
        out.append(Window(0, done + 1, 1))
    while done < n - 1:
        last = done + min(length, n - 1 - done)  # the window's last target
        out.append(Window(last - length, last + 1, done + 1))
        done = last
    return out


WINDOW_MODES = ("strided", "rolling")


def plan(n: int, length: int, stride: int | None, windows: str = "strided") -> list[Window]:
    """The windows of `windows` mode (``rolling`` takes no stride)."""
    if windows == "rolling":
        if stride is not None:
            raise PerplexityError("--stride applies to --windows strided, not rolling")
        return plan_rolling(n, length)
    if windows != "strided":
        raise PerplexityError(f"windows must be one of {', '.join(WINDOW_MODES)}, not '{windows}'")
    return plan_windows(n, length, length // 2 if stride is None else int(stride))


def default_batch_size(lm: LoadedModel, length: int) -> int:
    """Windows per forward: the [B, L, V] logits stay under ~0.5 GiB (CPU) or ~4 GiB (CUDA)."""
    budget = (4 if lm.device.type == "cuda" else 0.5) * 2**30
    per_window = length * lm.config.vocab_size * 4
    return max(1, min(64, int(budget // per_window)))


def score_ids(
    lm: LoadedModel,
    ids: Sequence[int],
    *,
    stride: int | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    sink: Sink | None = None,
    windows: str = "strided",
    tally: RouteTally | None = None,
) -> tuple[float, int]:
    """(total negative log-likelihood in nats, scored tokens) of `ids[1:]` given `ids`.

    `tally` (installed by the caller): counts the routing of the positions whose logits
    are scored (`t - 1` for each target t), so each fed position counts once."""
    import torch
    import torch.nn.functional as F

    if len(ids) < 2:
        raise PerplexityError("the text is too short: nothing to score (needs 2 tokens)")
    length = lm.max_length
    wins = plan(len(ids), length, stride, windows)
    total = sum(w.end - w.first for w in wins)
    bs = batch_size or default_batch_size(lm, length)
    if bs < 1:
        raise PerplexityError(f"batch size must be >= 1, not {bs}")
    x = torch.tensor(list(ids), dtype=torch.long)
    dev = torch.device(str(lm.device))
    nll = 0.0
    done = 0
    if progress:
        progress(0, total)
    for i in range(0, len(wins), bs):
        if cancel is not None and cancel.is_set():
            raise PerplexityCancelled("perplexity cancelled")
        group = wins[i : i + bs]
        width = max(w.end - 1 - w.begin for w in group)
        batch = torch.zeros(len(group), width, dtype=torch.long)  # right padding: id 0
        for r, w in enumerate(group):
            batch[r, : w.end - 1 - w.begin] = x[w.begin : w.end - 1]
        if tally is not None:
            mask = torch.zeros(len(group), width, dtype=torch.bool)
            for r, w in enumerate(group):
                mask[r, w.first - w.begin - 1 : w.end - w.begin - 1] = True
            tally.mask = mask
        with torch.inference_mode():
            logits = lm.model(batch.to(dev))  # [B, width, V]
            for r, w in enumerate(group):
                a, b = w.first - w.begin - 1, w.end - w.begin - 1  # logits at t-1 predict t
                rows = logits[r, a:b].float()  # [n_scored, V]
                targets = x[w.first : w.end].to(dev)
                nll += float(F.cross_entropy(rows, targets, reduction="sum"))
                if sink is not None:
                    sink(rows, targets)
        del logits
        done += sum(w.end - w.first for w in group)
        if progress:
            progress(done, total)
    return nll, total


def prefix_id(lm: LoadedModel, windows: str = "strided") -> int | None:
    """The unscored id put before the text: EOS; in ``rolling`` mode BOS when the tokenizer
    has one (else EOS), the token lm-eval's `hf` model puts there."""
    eos = getattr(lm, "eos_id", None)
    if windows == "rolling":
        bos = getattr(lm.tokenizer, "bos_token_id", None)
        if isinstance(bos, int):
            return bos
    return int(eos) if eos is not None else None


def scored_ids(lm: LoadedModel, text: str, windows: str = "strided") -> tuple[list[int], int]:
    """(the ids `score_ids` takes, the UTF-8 bytes they cover) by the module docstring's rule."""
    ids = lm.encode(text)
    first = prefix_id(lm, windows)
    if first is not None:
        return [first, *ids], len(text.encode("utf-8"))
    return ids, len(lm.decode(ids[1:]).encode("utf-8")) if len(ids) > 1 else 0


def perplexity(
    lm: LoadedModel,
    text: str,
    *,
    stride: int | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    sink: Sink | None = None,
    windows: str = "strided",
    tally: RouteTally | None = None,
) -> PerplexityResult:
    """Score `text` with `lm` by the rule in the module docstring."""
    t0 = time.perf_counter()
    ids, n_bytes = scored_ids(lm, text, windows)
    nll, n = score_ids(
        lm,
        ids,
        stride=stride,
        batch_size=batch_size,
        progress=progress,
        cancel=cancel,
        sink=sink,
        windows=windows,
        tally=tally,
    )
    loss = nll / n
    return PerplexityResult(
        checkpoint=lm.source,
        tokens=n,
        loss=loss,
        perplexity=math.exp(loss) if loss < 700 else math.inf,
        bits_per_byte=nll / math.log(2) / max(1, n_bytes),
        seconds=time.perf_counter() - t0,
    )


# ------------------------------------------------------------------------------ reporting
__all__ = [
    "PerplexityCancelled",
    "PerplexityError",
    "PerplexityResult",
    "TextFileError",
    "WINDOW_MODES",
    "format_results",
    "perplexity",
    "plan",
    "plan_rolling",
    "read_text_file",
    "run_perplexity",
    "score_ids",
    "stderr_progress",
    "write_results_json",
]


def _results_csv(data: list[dict[str, Any]]) -> str:
    kl_keys = [k for k in KLSummary.__dataclass_fields__ if k not in ("per_token", "model")]
    names = [f.name for f in fields(PerplexityResult)] + [f"kl_{k}" for k in kl_keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    w.writeheader()
    for row in data:
        kl = row.pop("kl", None) or {}
        w.writerow({**row, **{f"kl_{k}": kl.get(k, "") for k in kl_keys}})
    return buf.getvalue()


def write_results_json(
    results: Sequence[PerplexityResult],
    path: str | os.PathLike[str],
    kl: KLSummary | None = None,
) -> None:
    """A JSON list of objects with the `PerplexityResult` fields; with `kl`, the last
    (model B's) also has "kl": the `KLSummary` fields. A ``.csv`` path gets the same rows
    as CSV instead (the KL summary as ``kl_*`` columns, without the per-token values), so
    the file is what its name says."""
    data: list[dict[str, Any]] = [asdict(r) for r in results]
    if kl is not None and data:
        data[-1]["kl"] = asdict(kl)
    require_writable_target(Path(path).expanduser(), "output file")
    if Path(path).suffix.lower() == ".csv":
        text = _results_csv(data)
    else:
        text = json.dumps(data, indent=2) + "\n"
    try:
        Path(path).expanduser().write_text(text, encoding="utf-8")
    except OSError as e:
        raise SwamlaError(f"{path}: cannot write ({e.strerror or type(e).__name__})") from None


def stderr_progress(label: str, stream: IO[str] | None = None) -> Progress | None:
    """A one-line progress bar on `stream` (stderr), or None when it is not a terminal."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        return None
    t0 = time.perf_counter()

    def show(done: int, total: int) -> None:
        frac = done / total if total else 1.0
        bar = "█" * int(frac * 30) + "·" * (30 - int(frac * 30))
        dt = time.perf_counter() - t0
        rate = f" {done / dt:,.0f} tok/s" if dt > 0 and done else ""
        end = "\n" if done >= total else ""
        out.write(f"\r{label} {bar} {done:,}/{total:,}{rate}\x1b[K{end}")
        out.flush()

    return show


Loader = Callable[[Callable[[str], None]], "LoadedModel"]


def run_perplexity(
    loaders: Sequence[Loader],
    path: str | os.PathLike[str],
    *,
    stride: int | None = None,
    batch_size: int | None = None,
    output: str | os.PathLike[str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    windows: str = "strided",
    expert_stats: str | os.PathLike[str] | None = None,
) -> list[PerplexityResult]:
    """The CLI's `--perplexity FILE [--compare B] [--stride N | --windows rolling] [--output result.json]`.

    The file is read before any model loads (a bad path fails at once); models load one
    at a time and each is released before the next, so two need no more memory than one.
    With two models, KL(A||B) is reported too (`swamla_tui.runtime.kl`); the JSON row of
    B then carries it under "kl", per-token values included. `expert_stats`: model A's
    MoE summary over the scored positions, as JSON (`base.experts`).
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    text = read_text_file(path)
    if output:  # refused before any model loads, as a bad input file is
        require_writable_target(Path(output).expanduser(), "output file")
    if stride is not None and stride < 1:
        raise PerplexityError(f"--stride must be >= 1, got {stride}")
    if windows not in WINDOW_MODES:
        raise PerplexityError(
            f"--windows must be one of {', '.join(WINDOW_MODES)}, not '{windows}'"
        )
    results: list[PerplexityResult] = []
    runs: list[str] = []
    kl = _KLRun(err) if len(loaders) == 2 else None
    try:
        for i, load in enumerate(loaders):
            lm: Any = load(lambda s: print(f"… {s}", file=err))
            for n in lm.notices:
                print(f"note: {n}", file=err)
            bar = stderr_progress(Path(lm.source).name or lm.source, err)
            sink = kl.sink(i, lm, text, windows) if kl is not None else None
            tally = _tally(lm) if expert_stats and i == 0 else None
            with tally or nullcontext():
                results.append(
                    perplexity(
                        lm,
                        text,
                        stride=stride,
                        batch_size=batch_size,
                        progress=bar,
                        sink=sink,
                        windows=windows,
                        tally=tally,
                    )
                )
            if tally is not None and expert_stats:
                stats = summarise("perplexity", *tally.tallies())
                write_summary(stats, expert_stats)
                print(format_summary(stats), file=err)
            runs.append(how_it_runs(lm))
            del lm
        if len(results) == 2 and _same_file(results[0].checkpoint, results[1].checkpoint):
            for r, how in zip(results, runs, strict=True):
                r.checkpoint = f"{r.checkpoint} [{how}]"  # the same file, run two ways
        summary = kl.summary(results[0].checkpoint, results[1].checkpoint) if kl else None
    finally:
        if kl is not None:
            kl.close()
    print(format_results(results), file=out)
    if summary is not None:
        print(format_kl(summary), file=out)
    if output:
        write_results_json(results, output, summary)
    return results


def _tally(lm: Any) -> RouteTally:
    from ..engine.routing import RouteTally

    return RouteTally(lm.model)


def _same_file(a: str, b: str) -> bool:
    """One checkpoint named twice (`demo/x.pt` and `/abs/demo/x.pt` too)."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False  # a Hub repo id, or gone


def how_it_runs(lm: Any) -> str:
    """`float32`, `bfloat16, int8`...: what tells two runs of one checkpoint apart."""
    from ..model.quant import Int8DynamicLinear, Int8Linear

    how = str(lm.dtype).removeprefix("torch.")
    for m in lm.model.modules():
        if isinstance(m, Int8DynamicLinear):
            return how + (", int8-split" if m.kernel == "split" else ", int8-dynamic")
        if isinstance(m, Int8Linear):
            return how + ", int8-weight"
    return how


class _KLRun:
    """The two passes of a KL comparison, with a note instead of KL when it cannot be had."""

    def __init__(self, err: IO[str]) -> None:
        self.err = err
        self.recorder: KLRecorder | None = None
        self.comparer: KLComparer | None = None

    def sink(self, i: int, lm: Any, text: str, windows: str = "strided") -> Sink | None:
        ids, _ = scored_ids(lm, text, windows)
        if i == 0:
            try:
                self.recorder = recorder_for(lm, ids)
            except (OSError, RuntimeError) as e:  # no room, or no temporary folder to map
                print(f"note: KL divergence skipped: {one_line(e)}", file=self.err)
            return self.recorder
        if self.recorder is None:
            return None
        got = self.recorder.comparer(ids, int(lm.config.vocab_size), int(lm.max_length))
        if isinstance(got, str):
            print(f"note: KL divergence skipped: {got}", file=self.err)
            return None
        self.comparer = got
        return got

    def summary(self, reference: str, model: str) -> KLSummary | None:
        return self.comparer.summary(reference, model) if self.comparer is not None else None

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
