"""The batch detail view's figures line (`row_meta`): the row's measured timings."""

from __future__ import annotations

from swamla_tui.base.timings import ReplyTimings
from swamla_tui.batch.job import BatchRow
from swamla_tui.protocols import BatchRecord
from swamla_tui.ui.screens.batch_detail import row_meta


def test_detail_shows_the_rows_timings():
    row = BatchRow(0, "p")
    t = ReplyTimings(prompt_tokens=12, cached_tokens=0, prefill_s=0.04, ttft_s=0.05,
                     generated_tokens=9, decode_s=0.4, load_s=None)  # fmt: skip
    row.apply(BatchRecord(0, "p", "c", 9, 0.45, "length", timings=t))
    first, second = row_meta(row).split("\n")
    assert first == "done · finish: length · 9 new tokens · 0.45 s · 20.0 tok/s"
    assert second == (
        "prompt 12 tokens · prefill 0.04 s (300.0 tok/s) · first token 0.05 s · decode 20.0 tok/s"
    )
    assert row.record()["ttft_s"] == 0.05 and row.record()["prompt_tokens"] == 12
    again = BatchRow(0, "p")
    again.restore(row.record())  # a resumed run keeps them
    assert row_meta(again) == row_meta(row)


def test_detail_without_timings_has_one_line():
    row = BatchRow(0, "p")
    row.apply(BatchRecord(0, "p", "c", 3, 0.5, "eos"))
    assert "\n" not in row_meta(row)
