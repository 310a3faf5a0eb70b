"""The torch-free half of a checkpoint sweep (``--perplexity FILE --checkpoint RUN``): its rows,
their table, the loss-against-tokens plot, the output file and the resume journal.

The journal makes a sweep resumable the way batch runs are (`swamla_tui.batch.journal`):
with ``--output OUT`` every scored checkpoint is appended at once to ``OUT.sweep.jsonl``
(one JSON line, flushed and synced), so a killed sweep loses at most the checkpoint in
flight, and a rerun skips the checkpoints already there. Unlike a batch journal it is kept
after the sweep ends: a training run keeps adding checkpoints, and the next sweep of it
scores only the new ones. Each line carries the settings that make scores comparable
(the text's SHA-256, stride, max_length, dtype, quantization, tokenizer); a journal of
other settings is refused with one line that names ``--overwrite``, never mixed in.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import SwamlaError
from .jsonl import read_journal_lines

__all__ = [
    "SweepJournal",
    "SweepRow",
    "format_sweep",
    "plain_plot",
    "plot_sweep",
    "sweep_journal_path",
    "write_sweep",
]

JOURNAL_SUFFIX = ".sweep.jsonl"


@dataclass
class SweepRow:
    """One checkpoint of a sweep. `training_tokens`/`step` come from the checkpoint's name,
    else from its metadata (`total_tokens`, `step`); None when neither says."""

    checkpoint: str
    training_tokens: float | None
    step: int | None
    tokens: int  # scored tokens of the text
    loss: float
    perplexity: float
    bits_per_byte: float
    seconds: float


def _count(n: float | None) -> str:
    if n is None:
        return "-"
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.4g}{unit}"
    return f"{n:.0f}"


def format_sweep(rows: Sequence[SweepRow]) -> str:
    """A plain-text table, one line per checkpoint in the given (training) order."""
    head = ("checkpoint", "train tokens", "step", "loss", "perplexity", "bits/byte")
    body = [
        (
            r.checkpoint,
            _count(r.training_tokens),
            "-" if r.step is None else f"{r.step:,}",
            f"{r.loss:.4f}",
            f"{r.perplexity:.3f}",
            f"{r.bits_per_byte:.4f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = []
    for row in (head, *body):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _axis(rows: Sequence[SweepRow]) -> tuple[list[float], str]:
    """x values: training tokens when every row has them, else steps, else the order."""
    if all(r.training_tokens is not None for r in rows):
        return [float(r.training_tokens or 0) for r in rows], "training tokens"
    if all(r.step is not None for r in rows):
        return [float(r.step or 0) for r in rows], "step"
    return [float(i + 1) for i in range(len(rows))], "checkpoint (in order)"


def plot_sweep(
    rows: Sequence[SweepRow], *, width: int = 72, height: int = 16, color: bool = False
) -> str:
    """Loss against training tokens: plotext when it is installed, else `plain_plot`.
    `color` keeps plotext's ANSI colours (for a terminal); without it the text is plain."""
    xs, label = _axis(rows)
    ys = [r.loss for r in rows]
    try:
        import plotext as plt
    except ImportError:
        return plain_plot(xs, ys, xlabel=label, width=width, height=height)
    plt.clear_figure()
    plt.theme("pro" if color else "clear")
    plt.plotsize(width, height)
    plt.plot(xs, ys, marker="braille")
    plt.scatter(xs, ys, marker="●")
    ticks = sorted(set(xs))
    if len(ticks) > 6:
        ticks = [ticks[round(i * (len(ticks) - 1) / 5)] for i in range(6)]
    plt.xticks(ticks, [_count(t) for t in ticks])
    plt.title("loss on the text")
    plt.xlabel(label)
    text: str = plt.build()
    plt.clear_figure()
    return text if color else re.sub(r"\x1b\[[0-9;]*m", "", text)


def plain_plot(
    xs: Sequence[float], ys: Sequence[float], *, xlabel: str, width: int = 72, height: int = 16
) -> str:
    """A character plot: `*` per point on a `height`-line grid, y labels left, x range below."""
    if not xs or len(xs) != len(ys):
        raise ValueError("plain_plot needs as many x as y values, at least one")
    ylo, yhi = min(ys), max(ys)
    xlo, xhi = min(xs), max(xs)
    ylabels = [f"{yhi - (yhi - ylo) * i / max(1, height - 1):.4f}" for i in range(height)]
    lw = max(len(s) for s in ylabels)
    cols = max(10, width - lw - 2)
    grid = [[" "] * cols for _ in range(height)]
    for x, y in zip(xs, ys, strict=True):
        c = 0 if xhi == xlo else round((x - xlo) / (xhi - xlo) * (cols - 1))
        r = 0 if yhi == ylo else round((yhi - y) / (yhi - ylo) * (height - 1))
        grid[r][c] = "*"
    lines = ["loss on the text"]
    for i, cells in enumerate(grid):
        tick = ylabels[i] if i in (0, height - 1) or i == height // 2 else ""
        lines.append(f"{tick.rjust(lw)} |{''.join(cells).rstrip()}")
    lines.append(" " * lw + " +" + "-" * cols)
    left, right = _count(xlo), _count(xhi)
    lines.append(" " * (lw + 2) + left + right.rjust(cols - len(left)))
    lines.append(" " * (lw + 2) + xlabel.center(cols).rstrip())
    return "\n".join(lines)


def sweep_journal_path(output: str | os.PathLike[str]) -> Path:
    """Where the rows of a sweep writing `output` are journalled."""
    p = Path(output).expanduser()
    return p.with_name(p.name + JOURNAL_SUFFIX)


def _row(data: Any) -> SweepRow | None:
    """A journalled row back, or None when it is not one."""
    if not isinstance(data, dict) or set(data) != {f.name for f in fields(SweepRow)}:
        return None
    try:
        return SweepRow(**data)
    except TypeError:
        return None


class SweepJournal:
    """The rows of earlier passes of this sweep (`done`) and the append side."""

    def __init__(self, path: Path, settings: Mapping[str, Any], *, overwrite: bool = False) -> None:
        self.path = path
        self.settings = dict(settings)
        self.done: dict[str, SweepRow] = {}
        if overwrite:
            path.unlink(missing_ok=True)
        valid = self._read()
        try:
            with path.open("ab") as fh:
                fh.truncate(valid)  # a torn last line (killed inside a write) is cut off
        except OSError as e:
            raise SwamlaError(f"{path}: cannot write ({e.strerror or e})") from None

    def _read(self) -> int:
        records, valid = read_journal_lines(self.path)
        for number, rec in records:
            row = _row(rec.get("row")) if isinstance(rec, dict) else None
            if row is None:
                raise self._refuse(number, "is not a row of a checkpoint sweep")
            if rec.get("settings") != self.settings:
                raise self._refuse(number, "is a sweep of another text or other settings")
            self.done[row.checkpoint] = row
        return valid

    def _refuse(self, line: int, what: str) -> SwamlaError:
        return SwamlaError(
            f"{self.path}: line {line} {what} (use --overwrite to start over, or another --output)"
        )

    def append(self, row: SweepRow) -> None:
        line = json.dumps({"settings": self.settings, "row": asdict(row)}) + "\n"
        try:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())  # one line per checkpoint: minutes apart, sync each
        except OSError as e:
            raise SwamlaError(f"{self.path}: cannot write ({e.strerror or e})") from None
        self.done[row.checkpoint] = row


def write_sweep(rows: Sequence[SweepRow], path: str | os.PathLike[str]) -> None:
    """The rows as CSV (``.csv``) or a JSON list (any other name), replaced atomically."""
    p = Path(path).expanduser()
    if p.suffix.lower() == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[f.name for f in fields(SweepRow)], lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else v for k, v in asdict(r).items()})
        text = buf.getvalue()
    else:
        text = json.dumps([_jsonable(asdict(r)) for r in rows], indent=2) + "\n"
    tmp = p.with_name(p.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SwamlaError(f"{p}: cannot write ({e.strerror or type(e).__name__})") from None


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """inf (a diverged checkpoint's perplexity) as null: JSON has no infinity."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()}
