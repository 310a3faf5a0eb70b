"""Will a second model fit next to the first? (``--compare`` keeps both loaded.)

Asked before the second model loads, so a run that cannot hold both fails in one line
instead of swapping or dying of an out-of-memory error halfway. The second model is
assumed to be about as large as the first (an A/B comparison is usually two checkpoints
of one architecture); the free memory is the device's (CUDA) or the system's
``MemAvailable`` (CPU).
"""

from __future__ import annotations

import os
from typing import Any

from ..base.errors import SwamlaError

__all__ = ["MemoryCheckError", "available_bytes", "check_second_fits", "model_bytes"]

# Headroom for activations, the KV cache and allocator slack, as a share of the weights.
HEADROOM = 0.25


class MemoryCheckError(SwamlaError):
    """The second model would not fit in memory next to the first."""


def model_bytes(lm: Any) -> int:
    """Bytes of `lm.model`'s parameters and buffers."""
    tensors = [*lm.model.parameters(), *lm.model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def available_bytes(device: Any) -> int | None:
    """Free bytes on `device` (a torch.device), or None when it cannot be told."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_second_fits(first: Any, source: str) -> None:
    """Raise `MemoryCheckError` when a model like `first` would not fit in what is free."""
    need = int(model_bytes(first) * (1 + HEADROOM))
    free = available_bytes(first.device)
    if free is not None and need > free:
        raise MemoryCheckError(
            f"cannot compare: {source} needs about {_gb(need)} on {first.device} next to "
            f"the first model, only {_gb(free)} is free (--perplexity loads one at a time)"
        )
