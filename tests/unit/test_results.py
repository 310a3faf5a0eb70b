"""Tests for writing batch results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swamla_tui.base.errors import SwamlaError
from swamla_tui.base.timings import TIMING_FIELDS
from swamla_tui.batch.results import FIELDS, format_for, render_results, write_results
from tests.support.fakes import Outcome

RESULTS = [
    Outcome(0, "Once upon a time,", " there was a | pipe", 12, 0.5, "length"),
    Outcome(1, "Ünïcödé 日本語 🎉", "line one\nline two\r\nthree", 3, 1.25, "eos"),
    Outcome(2, 'Quotes "and", commas', "back\\slash and \\| escaped", 0, 0.0, "stop"),
]


def as_dict(r: Outcome) -> dict[str, object]:
    rec = {key: getattr(r, key, None) for key in FIELDS}
    rec["error"] = rec["error"] or None  # written as null when the row did not fail
    return rec


def test_format_for() -> None:
    assert format_for("out.jsonl") == "jsonl"
    assert format_for("out.CSV") == "csv"
    assert format_for(Path("dir.x/out.md")) == "md"
    assert format_for("out.markdown") == "md"


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("out.txt", "out.txt: unknown output format '.txt' (use .jsonl, .csv or .md)"),
        ("out.json", "unknown output format '.json'"),
        ("out", "out: no file extension (use .jsonl, .csv or .md)"),
        ("weird\nname.xls", "weird name.xls: unknown output format"),
    ],
)
def test_unknown_extension(tmp_path: Path, name: str, fragment: str) -> None:
    with pytest.raises(SwamlaError) as info:
        write_results(RESULTS, tmp_path / name)
    message = str(info.value)
    assert fragment in message
    assert len(message.splitlines()) == 1
    assert not (tmp_path / name).exists()


def test_unknown_extension_does_not_consume_results(tmp_path: Path) -> None:
    consumed = []

    def gen():
        for r in RESULTS:
            consumed.append(r)
            yield r

    with pytest.raises(SwamlaError):
        write_results(gen(), tmp_path / "x.doc")
    assert consumed == []


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = write_results(RESULTS, tmp_path / "out.jsonl")
    assert path == tmp_path / "out.jsonl"
    text = path.read_text(encoding="utf-8")
    assert "日本語" in text  # written as UTF-8, not \u escapes
    rows = [json.loads(line) for line in text.split("\n") if line]
    assert rows == [as_dict(r) for r in RESULTS]
    assert list(rows[0]) == list(FIELDS)


def test_csv_round_trip(tmp_path: Path) -> None:
    path = write_results(RESULTS, tmp_path / "out.csv")
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [list(row) for row in rows] == [list(FIELDS)] * len(RESULTS)
    for row, r in zip(rows, RESULTS, strict=True):
        assert row["prompt"] == r.prompt
        assert row["completion"] == r.completion  # embedded newlines survive
        assert int(row["new_tokens"]) == r.new_tokens
        assert float(row["seconds"]) == r.seconds
        assert row["finish_reason"] == r.finish_reason


def test_markdown_table_shape(tmp_path: Path) -> None:
    path = write_results(RESULTS, tmp_path / "out.md")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 + len(RESULTS)
    assert lines[0] == "| # | prompt | completion | new tokens | seconds | finish | error |"
    assert set(lines[1]) <= set("|-: ")
    for line in lines:
        assert line.startswith("| ") and line.endswith(" |")
        # Every row has seven cells: count pipes that are not escaped.
        unescaped = line.replace("\\\\", "").replace("\\|", "")
        assert unescaped.count("|") == 8, line
    assert lines[2].startswith("| 1 | Once upon a time, | ")
    assert "a \\| pipe" in lines[2]
    assert "| 12 | 0.50 | length |  |" in lines[2]
    assert "line one<br>line two<br>three" in lines[3]
    assert "Ünïcödé 日本語 🎉" in lines[3]
    assert "back\\\\slash and \\\\\\| escaped" in lines[4]


def test_markdown_cells_never_break_lines() -> None:
    odd = {"prompt": "a\u2028b\x85c\vd", "completion": None, "new_tokens": None}
    text = render_results([odd], "md")
    lines = text.split("\n")
    assert len(lines) == 4 and lines[-1] == ""
    assert "a<br>b<br>c<br>d" in lines[2]
    assert lines[2].endswith("|  |  |  |  |  |")


def test_input_order_restored_from_index(tmp_path: Path) -> None:
    shuffled = [RESULTS[2], RESULTS[0], RESULTS[1]]
    path = write_results(shuffled, tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [row["prompt"] for row in rows] == [r.prompt for r in RESULTS]


def test_order_kept_without_index() -> None:
    dicts = [{k: v for k, v in as_dict(r).items() if k != "index"} for r in reversed(RESULTS)]
    rows = [json.loads(line) for line in render_results(dicts, "jsonl").splitlines()]
    assert [row["prompt"] for row in rows] == [r.prompt for r in reversed(RESULTS)]


def test_dicts_and_missing_fields(tmp_path: Path) -> None:
    path = write_results([{"prompt": "p", "completion": "c", "extra": 1}], tmp_path / "o.jsonl")
    row = json.loads(path.read_text(encoding="utf-8"))
    assert row == {
        "index": None,
        "prompt": "p",
        "completion": "c",
        "new_tokens": None,
        "seconds": None,
        "finish_reason": None,
        "error": None,
        **dict.fromkeys(TIMING_FIELDS),
    }


def test_empty_results(tmp_path: Path) -> None:
    assert write_results([], tmp_path / "e.jsonl").read_text() == ""
    assert (
        write_results([], tmp_path / "e.csv").read_bytes()
        == b"index,prompt,completion,new_tokens,seconds,finish_reason,error,"
        + ",".join(TIMING_FIELDS).encode()
        + b"\r\n"
    )
    assert len(write_results([], tmp_path / "e.md").read_text().splitlines()) == 2


def test_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text("old\nstuff\nhere\nmore\n")
    write_results(RESULTS[:1], path)
    assert len(path.read_text().splitlines()) == 1


def test_write_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SwamlaError) as info:
        write_results(RESULTS, tmp_path / "missing" / "dir" / "o.csv")
    assert str(info.value).startswith("cannot write ")
    assert "No such file or directory" in str(info.value)


def test_render_unknown_format() -> None:
    with pytest.raises(SwamlaError):
        render_results(RESULTS, "xml")


text_st = st.text(alphabet=st.characters(exclude_categories=["Cs"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(text_st, text_st, st.integers(0, 10**6)), max_size=6))
def test_csv_and_jsonl_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory, items: list[tuple[str, str, int]]
) -> None:
    results = [
        {
            "index": i,
            "prompt": p,
            "completion": c,
            "new_tokens": n,
            "seconds": 0.5,
            "finish_reason": "eos",
            "error": None,
        }
        for i, (p, c, n) in enumerate(items)
    ]
    folder = tmp_path_factory.mktemp("export")
    csv_path = write_results(results, folder / "r.csv")
    with open(csv_path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["prompt"], r["completion"], int(r["new_tokens"])) for r in rows] == items
    jsonl_path = write_results(results, folder / "r.jsonl")
    lines = jsonl_path.read_text(encoding="utf-8").split("\n")[:-1]
    assert [json.loads(line) for line in lines] == [
        {**r, **dict.fromkeys(TIMING_FIELDS)} for r in results
    ]
    md = write_results(results, folder / "r.md").read_text(encoding="utf-8")
    assert len(md.split("\n")) == 3 + len(results)


def test_failed_row_shows_its_reason(tmp_path: Path) -> None:
    failed = Outcome(0, "big", "", 0, 0.0, "error", error="token id 600 is beyond the vocabulary")
    for name in ("f.jsonl", "f.csv", "f.md"):
        text = write_results([failed, RESULTS[1]], tmp_path / name).read_text(encoding="utf-8")
        assert "token id 600 is beyond the vocabulary" in text, name
    row = json.loads((tmp_path / "f.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert (row["finish_reason"], row["index"]) == ("error", 0)
    md = (tmp_path / "f.md").read_text(encoding="utf-8").splitlines()
    assert md[2].startswith("| 1 | big |") and md[3].startswith("| 2 | ")


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text("old\n")

    def boom(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("swamla_tui.batch.results.os.replace", boom)
    with pytest.raises(SwamlaError, match="No space left"):
        write_results(RESULTS, path)
    assert path.read_text() == "old\n"  # the old file is intact, no temporary left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl"]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs here")
@pytest.mark.timeout(20)
def test_a_fifo_output_is_refused_not_replaced(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(SwamlaError, match="FIFO") as exc:
        write_results([{"index": 0, "prompt": "p"}], fifo)
    assert "\n" not in str(exc.value)
    assert fifo.is_fifo()  # still the user's FIFO, not replaced by a file
