"""Device and dtype choice shared by every loader (checkpoints and exported folders)."""

from __future__ import annotations

from typing import cast

import torch

from ..base.errors import SwamlaError, one_line
from ..model.quant import QUANTIZE_CHOICES, Quantize, pick_int8

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise SwamlaError(f"unsupported dtype {dtype}: use float32, float16 or bfloat16")
        return dtype
    if dtype is None or str(dtype).lower() == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise SwamlaError(f"unknown dtype '{dtype}': use float32, float16 or bfloat16")
    return _DTYPES[key]


def pick_device(device: str | torch.device | None, notices: list[str]) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto'; CUDA that is absent or unusable falls back to CPU."""
    want = str(device or "auto").lower()
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(want)
    except RuntimeError:
        raise SwamlaError(f"unknown device '{device}': use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            notices.append("CUDA is not available: running on the CPU")
            return torch.device("cpu")
        try:  # a GPU the installed PyTorch has no kernels for fails here, not mid-reply
            (torch.ones(2, device=dev) * 2).sum().item()
        except Exception as e:  # noqa: BLE001
            notices.append(f"CUDA device unusable ({one_line(e, 80)}): running on the CPU")
            return torch.device("cpu")
    elif dev.type != "cpu":
        raise SwamlaError(f"unsupported device '{device}': use cpu, cuda, cuda:N or auto")
    return dev


def parse_quantize(value: str | None) -> Quantize | None:
    """None/"none" (float weights) or one of `QUANTIZE_CHOICES`; anything else: one line."""
    if value is None:
        return None
    key = str(value).strip().lower()
    if key in ("", "none", "off"):
        return None
    for kind in QUANTIZE_CHOICES:
        if key == kind:
            return cast(Quantize, kind)
    raise SwamlaError(f"unknown quantize '{value}': use {', '.join(QUANTIZE_CHOICES)} or none")


def check_quantize(quantize: Quantize | None, device: torch.device) -> Quantize | None:
    """The int8 kernels used here are CPU kernels: refuse a GPU before reading any file.
    Returns the path that runs ("int8": the one this CPU runs best, `quant.pick_int8`)."""
    if quantize is not None and device.type != "cpu":
        raise SwamlaError(
            f"--quantize {quantize} runs on the CPU only (device {device}): "
            "on a GPU leave it out (bfloat16 is the fast choice there)"
        )
    return None if quantize is None else pick_int8(quantize)
