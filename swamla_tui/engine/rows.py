"""A continuous batch's rows (`engine.continuous`): a queued prompt, a finished one, a row
in flight, and the draws that give each row the tokens of a run of its own (its own
generator, its own noise, drawn as `sample` draws them for one row)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..base.params import SamplingParams
from ..base.stops import StopText
from .decode_loop import RowState
from .sampling import noise_width, sample, sample_with
from .text import IncrementalDecoder


@dataclass
class Queued:
    """One prompt to run: its ids, or the one-line reason it cannot run; `limit` overrides
    the params' max_new_tokens for this prompt (None: use the params)."""

    index: int
    ids: list[int] | str
    limit: int | None = None


@dataclass
class Finished:
    """One prompt's outcome. `row` is None for a prompt that never ran (error, or
    cancelled while queued); `stop`/`decoder` hold its text when stop strings were given."""

    index: int
    row: RowState | None
    seconds: float
    error: str = ""
    stop: StopText | None = None
    decoder: IncrementalDecoder | None = None


@dataclass
class Slot:
    """A row's prompt in flight: its state, settings, generator and context bookkeeping."""

    index: int
    row: RowState
    params: SamplingParams
    limit: int
    gen: torch.Generator
    length: int  # tokens of this row's context (= the next token's position)
    t0: float
    stop: StopText | None
    decoder: IncrementalDecoder | None
    pending: list[int]  # context tokens not yet in the cache (the row waits for a prefill)
    waited: int = 0  # decode steps run while this row waited

    @property
    def fed(self) -> int:
        """Context tokens already in the row's cache: its columns [0, fed) (see `_chunk`)."""
        return self.length - len(self.pending)

    def result(self) -> Finished:
        return Finished(self.index, self.row, time.perf_counter() - self.t0, "",
                        self.stop, self.decoder)  # fmt: skip


def draw(slot: Slot, seen: Tensor, logits: Tensor) -> int:
    """One token for one row: `logits` [1, V], `seen` its [1, V] context mask."""
    return int(sample_with(logits, seen, slot.params, generator=slot.gen)[0])


def draw_rows(slots: dict[int, Slot], seen: Tensor, logits: Tensor) -> dict[int, int]:
    """`draw` for every row `r` of `slots` (logits[r], seen[r]), one `sample` call per
    distinct setting: each row's noise comes from its own generator, drawn as a call of
    its own draws it."""
    groups: dict[tuple[float, int, float, float], list[int]] = {}
    for r, s in slots.items():
        p = s.params
        key = (float(p.temperature), int(p.top_k), float(p.top_p),
               float(p.repetition_penalty))  # fmt: skip
        groups.setdefault(key, []).append(r)
    out: dict[int, int] = {}
    dev, vocab = logits.device, logits.shape[-1]
    for (temp, k, top_p, pen), rows in groups.items():
        noise = None
        if temp > 0:
            w = noise_width(k, vocab)
            noise = torch.cat([
                torch.empty(1, w, device=dev).exponential_(1.0, generator=slots[r].gen)
                for r in rows
            ])  # fmt: skip
        idx = torch.tensor(rows, device=dev)
        ids = sample(logits[idx], seen[idx], temperature=temp, top_k=k, top_p=top_p,
                     repetition_penalty=pen, noise=noise).tolist()  # fmt: skip
        out.update(zip(rows, ids, strict=True))
    return out
