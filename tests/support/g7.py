"""Test support for G7 (the trainer's 2026 checkpoints): fixture paths, greedy settings,
and synthetic G7 checkpoints written the trainer's way (random weights, fused or unfused
DeltaNet keys, `config` = the model dataclass dict, `args` = the command line)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from tests.support.helpers import FIXTURES

G7_DIR = FIXTURES / "g7" / "g7_base_small"
G7_CKPT = G7_DIR / "checkpoint_base_1_00B_step7629.pt"
G7_EXPECTED = G7_DIR / "checkpoint_base_1_00B_step7629.expected.pt"
G7_TOKENIZER = G7_DIR / "tok384"
TOL = 1e-4
GREEDY = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0}


@lru_cache(maxsize=1)
def expected() -> dict[str, Any]:
    return torch.load(G7_EXPECTED, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


def upto_first_eos(ids: list[int], eos: int | None) -> list[int]:
    """The original loop never stops at EOS: compare up to and including the first one."""
    if eos is not None and eos in ids:
        return ids[: ids.index(eos) + 1]
    return ids


def save(path: Path, obj: dict[str, Any]) -> Path:
    torch.save(obj, path)
    return path
