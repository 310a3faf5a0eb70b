"""engine.rows: drawing every row at once gives each row the token a draw of its own gives
(its own generator, its own settings), whatever rows share a setting."""

from __future__ import annotations

import torch

from swamla_tui.base.params import SamplingParams
from swamla_tui.engine.decode_loop import RowState
from swamla_tui.engine.rows import Slot, draw, draw_rows

V = 97
SETTINGS = [
    SamplingParams(temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.2),
    SamplingParams(temperature=0.0, top_k=1, top_p=1.0, repetition_penalty=1.0),
    SamplingParams(temperature=1.3, top_k=0, top_p=0.5, repetition_penalty=1.0),
]


def _slots(seed: int) -> dict[int, Slot]:
    out = {}
    for r in range(6):
        gen = torch.Generator().manual_seed(seed + r)
        out[r] = Slot(r, RowState(prompt=[1]), SETTINGS[r % 3], 8, gen, 1, 0.0, None, None, [])
    return out


def test_rows_drawn_together_get_the_tokens_drawn_alone():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, V, generator=g) * 3
    seen = torch.rand(6, V, generator=g) < 0.1
    batch, single = _slots(10), _slots(10)
    drawn = set()
    for _ in range(5):  # successive steps: each generator moves as a draw of its own moves it
        together = draw_rows(batch, seen, logits)
        alone = {r: draw(s, seen[r : r + 1], logits[r : r + 1]) for r, s in single.items()}
        assert together == alone
        assert together[1] == int(logits[1].argmax())  # the greedy row: the argmax
        drawn |= set(together.values())
        logits = logits.roll(7, dims=1)
    assert len(drawn) > 6
