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

import functools
from collections.abc import Sequence
from typing import Literal, cast

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


# ---------------------------------------------------------------- float32 through oneDNN
def cpu_vendor() -> str:
    """/proc/cpuinfo's vendor_id ("GenuineIntel", "AuthenticAMD"), or "" where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


@functools.cache
def onednn_float32_products() -> bool:
    """Whether float32 CPU products should run in oneDNN on row-major weights instead of
    the BLAS on column-major ones (`SWAMLA.use_cpu_decode_layout`).

    On AMD CPUs PyTorch's BLAS (MKL) runs few-row products far below the memory speed:
    on the 2-core EPYC 8 x (8192 x 1024) float32 weights took 15.2 ms at one row and 44.2
    at eight (column-major), oneDNN 10.9 and 22.1 on the same row-major weights; a decode
    step of the 262M model at 8 rows 176.5 -> 85.7 ms. On the Intel Xeon the column-major BLAS
    was measured (issue 27's sessions), so Intel keeps it. A probe product must match.
    """
    if cpu_vendor() != "AuthenticAMD" or not torch._C._has_mkldnn:
        return False
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(24, 16, generator=g), torch.randn(3, 16, generator=g)
    try:
        y = onednn_linear(x, w, None)
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.allclose(y, F.linear(x, w), atol=1e-5))


def float32_cpu_layout(
    device: torch.device, dtype: torch.dtype, enabled: bool = True
) -> Literal["column-major", "onednn"] | None:
    """The decode layout a float32 CPU model gets (the one decision `load`, the export
    reader and the benchmark share): "onednn" (`use_onednn_linears`, row-major weights) where
    `onednn_float32_products`, else "column-major" (`SWAMLA.use_cpu_decode_layout`); None for
    other devices and dtypes, or when the CPU layout option is off."""
    if not enabled or device.type != "cpu" or dtype != torch.float32:
        return None
    return "onednn" if onednn_float32_products() else "column-major"


def onednn_linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """`F.linear(x, w, b)` in oneDNN (the op PyTorch's x86 inductor lowers linears to)."""
    x2 = x.reshape(-1, x.shape[-1])
    y = torch.ops.mkldnn._linear_pointwise(x2, w, b, "none", [], "")
    return cast(Tensor, y).view(*x.shape[:-1], w.shape[0])


# oneDNN builds its product for each call (~25-30 us on the 2-core EPYC): below about a
# million weights (1024 x 1024) the BLAS's call is cheaper (64 x 64: 4 vs 30 us; 768 x 256:
# 32 vs 50 us; 1024 x 1024: 100 vs 84 us, one row)
ONEDNN_MIN_VALUES = 1 << 20


def pays_in_onednn(x: Tensor, w: Tensor) -> bool:
    """A float32 CPU product big enough for oneDNN's per-call cost."""
    return (
        x.dtype == torch.float32
        and w.dtype == torch.float32
        and w.device.type == "cpu"
        and w.numel() >= ONEDNN_MIN_VALUES
    )


class OneDNNLinear(nn.Linear):
    """An `nn.Linear` whose big float32 CPU products run in oneDNN
    (`onednn_float32_products`, `pays_in_onednn`); same parameters, same state-dict keys;
    anything else goes to `F.linear`."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if pays_in_onednn(x, w):
            return onednn_linear(x, w, self.bias)
        return F.linear(x, w, self.bias)


def use_onednn_linears(model: nn.Module) -> int:
    """Make every float32 CPU `nn.Linear` of `model` a `OneDNNLinear` (class changed in
    place, like `pack_bf16_linears`); returns how many."""
    n = 0
    for mod in model.modules():
        w = mod.weight if type(mod) is nn.Linear else None
        if w is not None and w.dtype == torch.float32 and w.device.type == "cpu":
            mod.__class__ = OneDNNLinear
            n += 1
    return n
