"""The torch-free half of perplexity: the text file, the result and its table.

Split from `swamla_tui.runtime.perplexity` (which imports torch to score) so the UI can read the
file, show the table and catch the file errors without importing torch.
"""

from __future__ import annotations

import math
import os
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from .errors import SwamlaError

__all__ = [
    "KLSummary",
    "PerplexityResult",
    "ScoreOptions",
    "TextFileError",
    "format_kl",
    "format_results",
    "percentile",
    "read_text_file",
    "summarise_kl",
]


class TextFileError(SwamlaError):
    """The text file to score is missing, not a regular file, binary or not UTF-8."""


class ScoreOptions(TypedDict, total=False):
    """The keyword options of a perplexity run, declared once for the `ScoringModel`
    Protocol and `LoadedModel.perplexity` (``**options: Unpack[ScoreOptions]``);
    `swamla_tui.runtime.perplexity.perplexity` gives them their meaning and defaults."""

    stride: int | None
    batch_size: int | None
    progress: Callable[[int, int], None] | None
    cancel: threading.Event | None


@dataclass
class PerplexityResult:
    checkpoint: str
    tokens: int
    loss: float
    perplexity: float
    bits_per_byte: float
    seconds: float


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


@dataclass
class KLSummary:
    """KL(A||B) of the next-token distributions of model A (`reference`) and model B
    (`model`) over the same scored tokens, as `llama-perplexity --kl-divergence` reports it:
    the mean (with its standard error), quantiles of the per-token values, and how often
    both models put the same token first."""

    reference: str
    model: str
    tokens: int
    mean: float
    stderr: float
    median: float
    p99: float
    max: float
    same_top1: float  # fraction of scored tokens
    per_token: list[float]


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) with linear interpolation (numpy's default rule)."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarise_kl(
    reference: str, model: str, per_token: Sequence[float], same_top1: int
) -> KLSummary:
    """The summary of per-token KL values; `same_top1` counts tokens whose argmax agrees."""
    n = len(per_token)
    if n == 0:
        raise ValueError("no scored tokens to compare")
    mean = math.fsum(per_token) / n
    var = math.fsum((x - mean) ** 2 for x in per_token) / (n - 1) if n > 1 else 0.0
    return KLSummary(
        reference=reference,
        model=model,
        tokens=n,
        mean=mean,
        stderr=math.sqrt(var / n),
        median=percentile(per_token, 50),
        p99=percentile(per_token, 99),
        max=max(per_token),
        same_top1=same_top1 / n,
        per_token=list(per_token),
    )


def format_kl(kl: KLSummary) -> str:
    """A few lines under the perplexity table (KL in nats)."""
    return "\n".join(
        [
            f"KL divergence, A = {kl.reference}, B = {kl.model} ({kl.tokens:,} tokens, nats):",
            f"  mean KL(A||B)  {kl.mean:.6f} ± {kl.stderr:.6f}",
            f"  median         {kl.median:.6f}",
            f"  99th pct       {kl.p99:.6f}",
            f"  max            {kl.max:.6f}",
            f"  same top-1     {100 * kl.same_top1:.2f}%",
        ]
    )
