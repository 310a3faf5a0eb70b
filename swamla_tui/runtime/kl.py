"""KL divergence of two models' next-token distributions over a text (``--perplexity FILE
--compare B``), the figures `llama-perplexity --kl-divergence` reports.

The models load one at a time (two need no more memory than one, as for perplexity), so
model A's log-probabilities over the whole vocabulary are kept on disk between the two
passes: a memory-mapped float32 file of `scored tokens x vocab` values in a temporary
folder, removed afterwards. Its size is checked against the free disk space first; when
it does not fit, or when B does not score the same ids with the same windows (another
tokenizer, vocabulary or `max_length`), KL is skipped with a note and the perplexity
table is still printed.

Both passes take `log_softmax` in float64 and round it to float32 (A's values are stored
that way), so a model compared with itself gives exactly 0; the KL sum runs in float64.
Terms where A gives probability 0 count 0 (the limit of p log p).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.scoring import KLSummary, summarise_kl

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["KLRecorder", "KLComparer", "log_probs", "token_kl"]

SPARE_BYTES = 1 << 30
"""Disk left free beside A's log-probabilities."""


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """The float32 log-probabilities both passes use (see the module docstring)."""
    import torch

    return torch.log_softmax(logits.double(), dim=-1).float()


def token_kl(la: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    """KL(A||B) per row of two [n, V] log-probability tensors, in float64."""
    import torch

    a, b = la.double(), lb.double()
    p = a.exp()
    terms = torch.where(p > 0, p * (a - b), torch.zeros((), dtype=torch.float64))
    return terms.sum(dim=-1)


class KLRecorder:
    """Model A's pass: a `Sink` for `score_ids` that stores each row's log-probabilities."""

    def __init__(self, ids: Sequence[int], vocab: int, max_length: int) -> None:
        import torch

        self.ids = list(ids)
        self.vocab = vocab
        self.max_length = max_length
        self.rows = max(0, len(self.ids) - 1)
        self._dir = tempfile.mkdtemp(prefix="swamla-kl-")
        need = self.rows * vocab * 4
        free = shutil.disk_usage(self._dir).free
        if need + SPARE_BYTES > free:
            self.close()
            raise OSError(
                f"A's log-probabilities need {need / 2**30:.1f} GiB of temporary disk "
                f"({self.rows:,} tokens x {vocab:,}), {free / 2**30:.1f} GiB free"
            )
        path = Path(self._dir) / "reference.f32"
        self.store = torch.from_file(
            str(path), shared=True, size=max(1, self.rows * vocab), dtype=torch.float32
        )
        self.done = 0

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        n, v = logits.shape
        if v != self.vocab or self.done + n > self.rows:
            raise ValueError(f"KL: got {n} rows of {v} logits at row {self.done}, not {self.vocab}")
        lp = log_probs(logits).cpu().reshape(-1)
        self.store[self.done * self.vocab : (self.done + n) * self.vocab] = lp
        self.done += n

    def comparer(self, ids: Sequence[int], vocab: int, max_length: int) -> KLComparer | str:
        """The sink for model B's pass, or why B cannot be compared with A."""
        if self.done != self.rows:
            return "model A's pass did not finish"
        if vocab != self.vocab:
            return f"the vocabularies differ ({self.vocab:,} and {vocab:,} tokens)"
        if list(ids) != self.ids:
            return "the models tokenize the text differently"
        if max_length != self.max_length:
            return (
                f"the windows differ (max_length {self.max_length} and {max_length}; "
                "give --max_length)"
            )
        return KLComparer(self)

    def close(self) -> None:
        self.__dict__.pop("store", None)
        shutil.rmtree(self._dir, ignore_errors=True)


class KLComparer:
    """Model B's pass: per-token KL(A||B) and top-1 agreement against the recorded rows."""

    def __init__(self, recorder: KLRecorder) -> None:
        self.rec = recorder
        self.done = 0
        self.per_token: list[float] = []
        self.same_top1 = 0

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        n, v = logits.shape
        lb = log_probs(logits)
        flat = self.rec.store[self.done * v : (self.done + n) * v]
        la = flat.view(n, v).to(lb.device)
        self.per_token.extend(float(x) for x in token_kl(la, lb).cpu())
        self.same_top1 += int((la.argmax(dim=-1) == lb.argmax(dim=-1)).sum())
        self.done += n

    def summary(self, reference: str, model: str) -> KLSummary:
        return summarise_kl(reference, model, self.per_token, self.same_top1)


def recorder_for(lm: Any, ids: Sequence[int]) -> KLRecorder:
    """A recorder for model A's pass over `ids` (raises OSError when the disk is too small)."""
    return KLRecorder(ids, int(lm.config.vocab_size), int(lm.max_length))
