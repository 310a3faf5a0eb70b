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
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import SwamlaError

if TYPE_CHECKING:  # pragma: no cover
    from .loaded import LoadedModel

Progress = Callable[[int, int], None]  # (scored tokens done, scored tokens in all)


class TextFileError(SwamlaError):
    """The text file to score is missing, not a regular file, binary or not UTF-8."""


class PerplexityError(SwamlaError):
    """Perplexity cannot be computed with these settings (stride, empty text, no tokenizer)."""


class PerplexityCancelled(SwamlaError):
    """The computation was cancelled (the `cancel` event was set)."""


@dataclass
class PerplexityResult:
    checkpoint: str
    tokens: int
    loss: float
    perplexity: float
    bits_per_byte: float
    seconds: float


# ------------------------------------------------------------------------------ input
def read_text_file(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of `path` (a leading BOM dropped); every failure is one line."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise TextFileError(f"{p}: no such file") from None
    except OSError as e:
        raise TextFileError(f"{p}: cannot read ({e.strerror or type(e).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise TextFileError(f"{p}: is a folder, not a text file")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
        )
        raise TextFileError(f"{p}: is {kind}, not a regular file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise TextFileError(f"{p}: cannot read ({e.strerror or type(e).__name__})") from None
    if not data:
        raise TextFileError(f"{p}: empty file")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise TextFileError(f"{p}: looks binary (NUL byte at offset {nul}), not a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextFileError(
            f"{p}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None
    return text.removeprefix("\ufeff")


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
def format_results(results: Sequence[PerplexityResult]) -> str:
    """A plain-text table: one row per checkpoint."""
    head = ("checkpoint", "tokens", "loss", "perplexity", "bits/byte", "seconds", "tok/s")
    rows = [
        (
            r.checkpoint,
            f"{r.tokens:,}",
            f"{r.loss:.4f}",
            f"{r.perplexity:.3f}",
            f"{r.bits_per_byte:.4f}",
            f"{r.seconds:.2f}",
            f"{r.tokens / r.seconds:,.0f}" if r.seconds > 0 else "-",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    lines = []
    for row in (head, *rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


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
