"""Writing batch results to .jsonl, .csv or .md (pure Python).

The format is picked from the output file's extension so that ``--output results.csv``
needs no separate flag. Results may be `BatchResult` objects or plain dicts; they are
written in input order (sorted by their ``index`` when every result has one, because
`generate_batch` yields them as they finish), one record per prompt with `FIELDS`:
``index`` counts prompts from 0 in input order; ``error`` is the reason of a prompt that
could not run (``finish_reason`` "error"), null otherwise; the timing fields
(`swamla_tui.base.timings.TIMING_FIELDS`: prompt tokens, prefill, first token, decode rate)
are null where the model measured none. Markdown shows the index as its 1-based ``#``
column and leaves the timings out.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..base.errors import SwamlaError
from ..base.paths import require_writable_target
from ..base.timings import TIMING_FIELDS, ReplyTimings

__all__ = [
    "FIELDS",
    "FORMATS",
    "export_results",
    "format_for",
    "render_results",
    "write_atomically",
    "write_results",
]

FIELDS: tuple[str, ...] = (
    "index",
    "prompt",
    "completion",
    "new_tokens",
    "seconds",
    "finish_reason",
    "error",
    *TIMING_FIELDS,
)
_MD_FIELDS = FIELDS[: -len(TIMING_FIELDS)]  # the Markdown table leaves the timings out

FORMATS: dict[str, str] = {".jsonl": "jsonl", ".csv": "csv", ".md": "md", ".markdown": "md"}

_MD_HEADERS = ("#", "prompt", "completion", "new tokens", "seconds", "finish", "error")


def _one_line(text: str) -> str:
    return re.sub(r"\s", " ", text)


def format_for(path: str | os.PathLike[str]) -> str:
    """``"jsonl"``, ``"csv"`` or ``"md"`` for `path`'s extension; `SwamlaError` otherwise."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        what = f"unknown output format {suffix!r}" if suffix else "no file extension"
        raise SwamlaError(
            f"{_one_line(os.fspath(path))}: {what} (use .jsonl, .csv or .md)"
        ) from None


def _get(result: Any, key: str) -> Any:
    if isinstance(result, Mapping):
        return result.get(key)
    value = getattr(result, key, None)
    timings = getattr(result, "timings", None)
    if value is None and key in TIMING_FIELDS and isinstance(timings, ReplyTimings):
        return timings.fields()[key]  # an engine `BatchResult`
    return value


def _records(results: Iterable[Any], fields: Sequence[str] = FIELDS) -> list[dict[str, Any]]:
    """`fields` of each result (missing ones as None), in input order."""
    items = list(results)
    indexes = [_get(r, "index") for r in items]
    if items and all(isinstance(i, int) for i in indexes):
        order = sorted(range(len(items)), key=lambda i: indexes[i])
        items = [items[i] for i in order]
    records = [{key: _get(r, key) for key in fields} for r in items]
    if "error" in fields:
        for rec in records:  # "" (a result object's "no error") and None are the same
            rec["error"] = rec["error"] or None
    return records


def _md_cell(value: Any) -> str:
    """A value as one Markdown table cell: no raw pipes, no line breaks."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.2f}"
    else:
        text = str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return re.sub(r"\r\n|[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]", "<br>", text)


def _render_md(records: list[dict[str, Any]], fields: Sequence[str] = FIELDS) -> str:
    """A table whose ``#`` column is the 1-based input index (the row number without one)."""
    if tuple(fields) == FIELDS:
        fields = _MD_FIELDS
    shown_fields = [f for f in fields if f != "index"]
    headers: tuple[str, ...]
    if tuple(fields) == _MD_FIELDS:
        headers = _MD_HEADERS
        align = ["---:"] + ["---"] * 2 + ["---:"] * 2 + ["---"] * 2
    else:
        headers = ("#", *(f.replace("_", " ") for f in shown_fields))
        align = ["---:"] + ["---"] * len(shown_fields)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for number, rec in enumerate(records, 1):
        index = rec.get("index")
        shown = index + 1 if isinstance(index, int) else number
        cells = [str(shown)] + [_md_cell(rec[key]) for key in shown_fields]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _render_csv(records: list[dict[str, Any]], fields: Sequence[str] = FIELDS) -> str:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def _render_jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)


def render_results(results: Iterable[Any], fmt: str, fields: Sequence[str] = FIELDS) -> str:
    """The text of `results` in `fmt` (``"jsonl"``, ``"csv"`` or ``"md"``); `fields`: the
    columns (an A/B run passes `swamla_tui.batch.compare.COMPARE_FIELDS`)."""
    records = _records(results, fields)
    if fmt == "jsonl":
        return _render_jsonl(records)
    if fmt == "csv":
        return _render_csv(records, fields)
    if fmt == "md":
        return _render_md(records, fields)
    raise SwamlaError(f"unknown output format {fmt!r} (use jsonl, csv or md)")


def write_results(
    results: Iterable[Any], path: str | os.PathLike[str], fields: Sequence[str] = FIELDS
) -> Path:
    """Write `results` to `path` in the format its extension names; returns the path.

    Raises `SwamlaError` (one line) for an unknown extension or when the file cannot be
    written. The format is checked before anything is consumed or written.
    """
    fmt = format_for(path)
    target = Path(path)
    require_writable_target(target, "output file")  # never replace a FIFO or a device
    text = render_results(results, fmt, fields)
    try:
        write_atomically(target, text)
    except OSError as exc:
        raise SwamlaError(
            f"cannot write {_one_line(os.fspath(path))}: {exc.strerror or exc}"
        ) from None
    return target


def write_atomically(target: Path, text: str) -> None:
    """Replace `target` with `text` so that a crash leaves the old file or the new one.

    Written to a temporary file beside it, synced, then renamed over it (the rename is
    atomic on POSIX and Windows filesystems). ``newline=""`` keeps csv's ``\r\n`` as is
    and writes ``\n`` elsewhere on every platform.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def export_results(
    results: Iterable[Any],
    path: str | os.PathLike[str],
    *,
    exports_dir: str | os.PathLike[str] | None = None,
    fields: Sequence[str] = FIELDS,
) -> Path:
    """`write_results` to a path the user typed: ``~`` expanded, and the app's own
    `exports_dir` created when the file goes there (any other folder must exist).

    Raises `SwamlaError` (one line) for an unknown format or a failed write.
    """
    target = Path(os.path.expanduser(os.fspath(path)))
    format_for(target)
    if exports_dir is not None and target.parent == Path(exports_dir):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SwamlaError(
                f"cannot create {_one_line(os.fspath(target.parent))}: {exc.strerror or exc}"
            ) from None
    return write_results(results, target, fields)
