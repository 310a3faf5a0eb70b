"""Parameters that share one concatenated tensor, so one matrix product serves several.

At batch 1 a decode step is a chain of matrix-vector products; several small ones on the
same input (DeltaNet's q/k/v/g/beta projections, MoE's router + shared expert + latent down
projection) cost more than one product over their concatenation. `RowFusion.fuse` copies
the parameters into one tensor and makes each parameter a view of its rows, so the weights
are held once and `state_dict()` keeps its keys. If the parameters are later replaced
(`.to()`, `load_state_dict(assign=True)`), `get` notices and concatenates on the fly: the
result is always right, only slower until `fuse` runs again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RowFusion:
    """The row-wise concatenation of `module.name` parameters (looked up at each use)."""

    def __init__(self, refs: Sequence[tuple[nn.Module, str]]) -> None:
        self.refs = list(refs)
        self.tensor: Tensor | None = None
        self._ptrs: list[int] = []

    def _params(self) -> list[Tensor]:
        return [getattr(m, n) for m, n in self.refs]

    def fuse(self, column_major: bool = False) -> None:
        params = self._params()
        with torch.no_grad():
            w = torch.cat([p.detach() for p in params], 0)
            if column_major and w.ndim == 2:
                w = w.t().contiguous().t()
            off = 0
            for p in params:
                n = p.shape[0]
                p.data = w[off : off + n]
                off += n
        self.tensor = w
        self._ptrs = [p.data_ptr() for p in params]

    def get(self) -> Tensor:
        params = self._params()
        w = self.tensor
        if w is not None and [p.data_ptr() for p in params] == self._ptrs:
            return w
        return torch.cat(params, 0)


# ---------------------------------------------------------------- bfloat16 on CPUs without it
def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bfloat16 products natively (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fp16_packing_available() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines


class PackedLinear(nn.Linear):
    """An `nn.Linear` that also holds FBGEMM's packed float16 copy of its bfloat16 weight.

    On CPUs without bfloat16 instructions (the project's AVX2 machine) PyTorch's bfloat16
    matrix-vector product converts element by element and runs at about 3 GB/s of weights,
    slower than float32; FBGEMM's float16 GEMM (`quantized::linear_dynamic_fp16`, the
    kernel of torch.ao's float16 dynamic quantization) reads the same 2 bytes per weight
    and converts with F16C, about 1.5x faster here (measured next to each other). Every
    bfloat16 value with |w| in [6.1e-5, 65504] is exactly a float16 value; smaller ones
    round to float16's subnormal step (6e-8, below a bfloat16 step of such weights). The
    input is widened to float32 (exact), the product accumulates in float32 and the output
    is rounded to bfloat16 once: at least as exact as the bfloat16 kernel.
    The weight parameter is kept (state dict, export, the absorbed MLA views), so the
    weights are held twice: memory for speed, chosen with the CPU decode layout option.
    `forward` falls back to `F.linear` when the weight was replaced after packing.
    """

    _fp16: object | None
    _fp16_ptr: int

    def pack(self) -> None:
        w = self.weight.detach()
        self._fp16 = torch.ops.quantized.linear_prepack_fp16(w.float(), None)
        self._fp16_ptr = w.data_ptr()

    def forward(self, x: Tensor) -> Tensor:
        packed = self._fp16
        if packed is None or self.weight.data_ptr() != self._fp16_ptr:
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(-1, self.in_features).float()  # [M, K]
        y: Tensor = torch.ops.quantized.linear_dynamic_fp16(x2, packed)
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)


def pack_bf16_linears(model: nn.Module, skip: tuple[str, ...] = ()) -> int:
    """Give every bfloat16 CPU `nn.Linear` (names without `skip`) its packed float16 copy.

    The modules change class in place (`PackedLinear` is an `nn.Linear`): same parameters,
    same state-dict keys. Weights outside float16's range keep the bfloat16 kernel.
    Returns how many were packed.
    """
    n = 0
    for name, mod in model.named_modules():
        if type(mod) is not nn.Linear or any(s in name for s in skip):
            continue
        w = mod.weight.detach()
        if w.dtype != torch.bfloat16 or w.device.type != "cpu" or w.ndim != 2:
            continue
        if not bool(torch.isfinite(w).all()) or float(w.abs().max()) > 65504.0:
            continue
        mod.__class__ = PackedLinear
        cast(PackedLinear, mod).pack()
        n += 1
    return n
