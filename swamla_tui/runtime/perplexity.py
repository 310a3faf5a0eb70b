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
  padding after the last real token cannot change a causal model's earlier logits).

Figures: `tokens` = scored tokens, `loss` = their mean negative log-likelihood in nats,
`perplexity = exp(loss)`, `bits_per_byte = loss * tokens / ln 2 / bytes`, where `bytes`
is the UTF-8 size of the scored text (the whole text when an EOS prefix is used, else the
text after the first token). Bits per byte compares checkpoints with different
tokenizers; perplexity per token does not.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..base.errors import SwamlaError
from ..base.scoring import PerplexityResult, TextFileError, format_results, read_text_file

if TYPE_CHECKING:  # pragma: no cover
    from .loaded_model import LoadedModel

Progress = Callable[[int, int], None]  # (scored tokens done, scored tokens in all)


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
) -> tuple[float, int]:
    """(total negative log-likelihood in nats, scored tokens) of `ids[1:]` given `ids`."""
    import torch
    import torch.nn.functional as F

    if len(ids) < 2:
        raise PerplexityError("the text is too short: nothing to score (needs 2 tokens)")
    length = lm.max_length
    stride = length // 2 if stride is None else int(stride)
    windows = plan_windows(len(ids), length, stride)
    total = sum(w.end - w.first for w in windows)
    bs = batch_size or default_batch_size(lm, length)
    if bs < 1:
        raise PerplexityError(f"batch size must be >= 1, not {bs}")
    x = torch.tensor(list(ids), dtype=torch.long)
    dev = torch.device(str(lm.device))
    nll = 0.0
    done = 0
    if progress:
        progress(0, total)
    for i in range(0, len(windows), bs):
        if cancel is not None and cancel.is_set():
            raise PerplexityCancelled("perplexity cancelled")
        group = windows[i : i + bs]
        width = max(w.end - w.begin for w in group)
        batch = torch.zeros(len(group), width, dtype=torch.long)  # right padding: id 0
        for r, w in enumerate(group):
            batch[r, : w.end - w.begin] = x[w.begin : w.end]
        with torch.inference_mode():
            logits = lm.model(batch.to(dev))  # [B, width, V]
            for r, w in enumerate(group):
                a, b = w.first - w.begin - 1, w.end - w.begin - 1  # logits at t-1 predict t
                rows = logits[r, a:b].float()  # [n_scored, V]
                targets = x[w.first : w.end].to(dev)
                nll += float(F.cross_entropy(rows, targets, reduction="sum"))
        del logits
        done += sum(w.end - w.first for w in group)
        if progress:
            progress(done, total)
    return nll, total


def perplexity(
    lm: LoadedModel,
    text: str,
    *,
    stride: int | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> PerplexityResult:
    """Score `text` with `lm` by the rule in the module docstring."""
    t0 = time.perf_counter()
    ids = lm.encode(text)
    eos = getattr(lm, "eos_id", None)
    if eos is not None:
        ids = [int(eos), *ids]
        n_bytes = len(text.encode("utf-8"))
    else:
        n_bytes = len(lm.decode(ids[1:]).encode("utf-8")) if len(ids) > 1 else 0
    nll, n = score_ids(
        lm, ids, stride=stride, batch_size=batch_size, progress=progress, cancel=cancel
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
    "format_results",
    "perplexity",
    "read_text_file",
    "run_perplexity",
    "score_ids",
    "stderr_progress",
    "write_results_json",
]


def write_results_json(results: Sequence[PerplexityResult], path: str | os.PathLike[str]) -> None:
    """A JSON list of objects with exactly the `PerplexityResult` fields."""
    data = [asdict(r) for r in results]
    try:
        Path(path).expanduser().write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
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
) -> list[PerplexityResult]:
    """The CLI's `--perplexity FILE [--compare B] [--stride N] [--output result.json]`.

    The file is read before any model loads (a bad path fails at once); models load one
    at a time and each is released before the next, so two need no more memory than one.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    text = read_text_file(path)
    if stride is not None and stride < 1:
        raise PerplexityError(f"--stride must be >= 1, got {stride}")
    results: list[PerplexityResult] = []
    for load in loaders:
        lm: Any = load(lambda s: print(f"… {s}", file=err))
        for n in lm.notices:
            print(f"note: {n}", file=err)
        bar = stderr_progress(Path(lm.source).name or lm.source, err)
        results.append(perplexity(lm, text, stride=stride, batch_size=batch_size, progress=bar))
        del lm
    print(format_results(results), file=out)
    if output:
        write_results_json(results, output)
    return results
