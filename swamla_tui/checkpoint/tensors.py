"""Checks on the tensors a checkpoint holds, before and after they become model weights.

- `check_tensor`: a weight is a plain tensor whose (size, stride, offset) stays inside its
  storage and never overlaps itself. A zero-stride (4e6, 64) "embedding" in a 2 MB file
  is 1 GB once copied, and the page release below would have freed memory that is not the
  file's; such tensors are refused before any copy.
- `drop_mapped_pages`: after a memory-mapped weight is copied, its file pages are given
  back to the kernel, but only pages inside that tensor's own storage.
- `first_nonfinite`: one reduction per tensor to find NaN/Inf weights (they make every
  reply empty) so the loader can warn.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import torch

from ..base.errors import CheckpointError
from .safety import OptimStateStandIn


def span(t: torch.Tensor) -> int:
    """Elements of the storage a tensor reaches, from its offset (0 for an empty tensor)."""
    if t.numel() == 0:
        return 0
    return 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))


def overlaps(t: torch.Tensor) -> bool:
    """True when two indices of `t` address the same element (zero or interleaved strides).

    Dimensions sorted by stride must each step over everything the smaller ones reach;
    that is the usual sufficient test (views of a dense weight always pass it).
    """
    dims = sorted((s, n) for n, s in zip(t.shape, t.stride(), strict=True) if n > 1)
    reach = 0  # elements spanned by the dimensions seen so far, minus one
    for s, n in dims:
        if s <= reach:
            return True
        reach += (n - 1) * s
    return False


def check_tensor(name: str, t: torch.Tensor, origin: str) -> None:
    """Refuse a tensor that is not a plain weight laid out inside its own storage."""
    if isinstance(t, OptimStateStandIn):
        raise CheckpointError(
            f"{origin}: '{name}' is an optimizer state (torchao {type(t).__name__}), "
            "not a model weight"
        )
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        raise CheckpointError(f"{origin}: '{name}' is a {type(t).__name__}, not a plain tensor")
    if t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
        raise CheckpointError(f"{origin}: '{name}' has no plain data (layout {t.layout})")
    if t.numel() == 0:
        return
    if any(s < 0 for s in t.stride()):
        raise CheckpointError(f"{origin}: '{name}' has a negative stride {t.stride()}")
    if overlaps(t):
        raise CheckpointError(
            f"{origin}: '{name}' of shape {tuple(t.shape)} has strides {t.stride()} that "
            "repeat its elements (weights must be dense)"
        )
    need = (t.storage_offset() + span(t)) * t.element_size()
    have = t.untyped_storage().nbytes()
    if need > have:
        raise CheckpointError(
            f"{origin}: '{name}' of shape {tuple(t.shape)} needs {need:,} bytes but its "
            f"storage has {have:,}"
        )


def check_state_dict(sd: dict[str, torch.Tensor], origin: str) -> None:
    for name, t in sd.items():
        check_tensor(name, t, origin)


def drop_mapped_pages(t: torch.Tensor) -> None:
    """Let the kernel drop the file pages of a copied tensor (Linux; best effort).

    The caller guarantees the tensor is a memory map of the checkpoint file.

    Only for tensors in a read-only use of a private file mapping (torch.load mmap=True):
    a dropped page is read again from the file if touched, so nothing is lost; it keeps
    peak RSS near one copy of the weights instead of two. The range is the tensor's own
    extent, clipped to its storage, so no page outside the mapped file is ever touched.
    """
    if not sys.platform.startswith("linux") or t.numel() == 0:
        return
    try:
        import ctypes
        import mmap

        store = t.untyped_storage()
        lo, hi = store.data_ptr(), store.data_ptr() + store.nbytes()
        start = t.data_ptr()
        end = start + span(t) * t.element_size()
        start, end = max(start, lo), min(end, hi)
        page = mmap.PAGESIZE
        a, b = -(-start // page) * page, end // page * page  # whole pages inside both
        if b > a:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(b - a), 4)  # MADV_DONTNEED
    except Exception:  # noqa: BLE001 - an optimisation only
        return


def all_finite(t: torch.Tensor) -> bool:
    """False when a floating tensor holds NaN or Inf.

    One `sum` (a single pass, no temporary of the tensor's size), called right after the
    tensor was written so much of it is still in cache; only a non-finite sum is confirmed
    element-wise, since finite weights could in principle overflow a float32 sum.
    """
    if not t.is_floating_point() or t.numel() == 0:
        return True
    if bool(torch.isfinite(t.sum(dtype=torch.float32))):
        return True
    return bool(torch.isfinite(t).all())


def first_nonfinite(tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating tensor holding NaN or Inf, else None."""
    return next((name for name, t in tensors if not all_finite(t)), None)
