"""The Engram token -> canonical id map (formats v2 §7.1): plain data, no modules.

The mapping is not stored in checkpoints: it is rebuilt from the tokenizer's vocabulary.
The trainer numbered groups in the order a fast tokenizer's `get_vocab()` happened to
iterate (random per process, unrecoverable); we number them in ascending token-id order,
as a slow tokenizer would, and accept a supplied mapping instead (formats v2 §7.1 quirk b). Kept apart
from `engram.py` (the nn.Modules) so the loader-side code in `generation.py` builds the map
without importing the layers.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

_STRIP = "\u2581\u0120 "  # '▁', 'Ġ', space


def normalise_token(s: str) -> str:
    """NFKC, NFD, drop Mn marks, lowercase, strip leading ▁/Ġ/space, collapse whitespace.

    Quirk kept: NFD turns byte-level 'Ġ' into 'G' + a mark before the strip step, so 'Ġthe'
    becomes 'gthe' (the marker is never stripped).
    """
    s = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", s))
    s = "".join(ch for ch in s if unicodedata.category(ch) != "Mn").lower()
    return " ".join(s.lstrip(_STRIP).split())


def token_mapping(vocab: Mapping[str, int], size: int) -> Tensor:
    """Canonical id for each token id < size ([size] int64); groups numbered 0, 1, ... as
    each normalised string is first met in ascending token-id order. Ids without a
    tokenizer entry map to 0."""
    groups: dict[str, int] = {}
    out = [0] * size
    for tok, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        c = groups.setdefault(normalise_token(tok), len(groups))
        if 0 <= i < size:
            out[i] = c
    return torch.tensor(out, dtype=torch.long)


def mapping_tensor(mapping: Sequence[int] | Tensor, size: int) -> Tensor:
    """A supplied mapping as [size] int64 (shorter ones are padded with 0)."""
    m = torch.as_tensor(mapping, dtype=torch.long).flatten()
    if m.numel() < size:
        m = torch.cat((m, torch.zeros(size - m.numel(), dtype=torch.long)))
    return m[:size].clone()
