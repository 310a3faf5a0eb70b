"""Int8 weights for CPU decoding: `load(..., quantize="int8")` (the package's loader).

Every big projection (attention, MLP, shared-expert and DeltaNet projections that run as
their own module) is stored as int8 with one symmetric scale per *output* channel
(w ≈ q * s, q in [-127, 127], s = max|w_row| / 127), and the tied LM head gets its own
int8 copy (the embedding stays in the running dtype: a lookup reads one row per token,
so quantizing it saves memory but no time). Left in the running dtype: MLA's `wkv_b`
(the absorbed cached path views its weight per head; 1M values), products fused by
`RowFusion` (DeltaNet/MoE inputs), routed experts, norms and biases.

Two kernels, both maintained by PyTorch (no hand-written dequantize-then-matmul):
- "int8" (weight-only): `aten._weight_int8pack_mm` with bfloat16 activations (for a
  float32 model too: the kernel's float32 input path is scalar code, 3-9x slower than
  float32 weights; bfloat16 inputs are vectorised on AVX2 and AVX-512), products
  accumulated in float32 and rounded to bfloat16; calls with more than
  `WEIGHT_ONLY_MAX_ROWS` rows use a bfloat16 copy of the weight and a GEMM instead.
  Refused on CPUs whose torch kernels are neither AVX2 nor AVX-512 (scalar there).
- "int8-dynamic": FBGEMM's dynamic linear (`quantized::linear_dynamic`, the kernel of
  `torch.ao` dynamic quantization): the same int8 weights, and each call also quantizes
  its input to 8 bits (one scale per call, reduce_range for AVX2's 16-bit pair sums).
  At a measured quality cost (README).
The quantized modules expose `weight` (dequantized, computed on use) for code that reads
shapes or dtypes; the float weights themselves are released.
"""

from __future__ import annotations

import warnings
from typing import Literal, cast, get_args

import torch
from torch import Tensor, nn

from ..base.errors import SwamlaError
from .fuse import RowFusion

Quantize = Literal["int8", "int8-dynamic"]
QUANTIZE_CHOICES: tuple[str, ...] = get_args(Quantize)

# up to this many rows per call (decode steps of up to 8 sequences) the weight-only
# kernel; above it (prefill, larger batches) a bfloat16 copy of the weight and a GEMM.
# Measured on the AVX-512/AMX Xeon (1 thread, 8192 x 1024): 8 rows 5.8 ms vs 8.4 (copy) vs
# 7.5 (float32); 16 rows 12.5 vs 8.8 vs 12.8; 64 rows 43 vs 13 vs 29 (BENCHMARKS.md).
WEIGHT_ONLY_MAX_ROWS = 8
# bfloat16 weight values copied per block above that (2 MiB: stays in a 4 MiB L2)
COPY_BLOCK_VALUES = 1 << 20

# torch CPU kernel levels (`torch.backends.cpu.get_cpu_capability()`) where
# `_weight_int8pack_mm` has a vectorised bfloat16 path; elsewhere it runs scalar code
# (measured with ATEN_CPU_CAPABILITY=default: 8x slower than float32) and is refused.
WEIGHT_ONLY_CAPABILITIES = ("AVX2", "AVX512", "AVX512_BF16")


def check_weight_only_cpu(capability: str | None = None) -> None:
    """`--quantize int8` only where its kernel is vectorised (faster than float32 there)."""
    cap = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    if cap.upper() not in WEIGHT_ONLY_CAPABILITIES:
        raise SwamlaError(
            f"--quantize int8 has no vectorised kernel on this CPU (torch kernels {cap}): "
            "it would run slower than float32; leave --quantize out"
        )


def int8_per_channel(w: Tensor) -> tuple[Tensor, Tensor]:
    """w [N, K] -> (q int8 [N, K], scale float32 [N]) with w ≈ q * scale[:, None]."""
    w32 = w.detach().float()
    amax = w32.abs().amax(dim=1)
    scale = (amax / 127.0).clamp(min=torch.finfo(torch.float32).tiny)  # an all-zero row: q 0
    q = torch.round(w32 / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scale


class Int8Linear(nn.Module):
    """y = x (q * s)ᵀ + b with `aten._weight_int8pack_mm` (int8 weights, float activations)."""

    qweight: Tensor  # buffers
    scale: Tensor
    scale_bf16: Tensor

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        q, s = int8_per_channel(weight)
        self.out_features, self.in_features = q.shape
        self.float_dtype = weight.dtype
        self.register_buffer("qweight", q)
        self.register_buffer("scale", s)
        self.register_buffer("scale_bf16", s.to(torch.bfloat16))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)

    @property
    def weight(self) -> Tensor:
        """The dequantized weight (a fresh tensor: for shapes, dtypes and tests)."""
        return (self.qweight.float() * self.scale[:, None]).to(self.float_dtype)

    def forward(self, x: Tensor) -> Tensor:
        k = self.in_features
        x2 = x.reshape(-1, k)  # [M, K]
        if k % 32 != 0:
            # the bfloat16 kernel reads past the row end unless K is a multiple of 32 (it
            # crashed at K = 100 here); the float32 one is exact but not vectorised
            y = torch.ops.aten._weight_int8pack_mm(
                x2.float().contiguous(), self.qweight, self.scale
            )
        elif x2.shape[0] <= WEIGHT_ONLY_MAX_ROWS:
            # bfloat16 activations even for a float32 model: the kernel's only vectorised
            # input type (float32 inputs measured 3-9x slower than float32 weights)
            xb = x2.to(torch.bfloat16).contiguous()
            y = torch.ops.aten._weight_int8pack_mm(xb, self.qweight, self.scale_bf16)
        else:
            y = self._copy_gemm(x2.to(torch.bfloat16))
        y = cast(Tensor, y).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def _copy_gemm(self, xb: Tensor) -> Tensor:
        """Many rows: the kernel re-reads the weight per 4 rows, so a bfloat16 copy (exact:
        |q| <= 127) and a bfloat16 GEMM are faster; scales applied after. The copy is made a
        block of output rows at a time into one cache-sized buffer (a whole copy of the head
        allocated per call measured 1.7-2x slower than the block copies)."""
        n, k = self.out_features, self.in_features
        rows = max(1, COPY_BLOCK_VALUES // k)
        if n <= rows:
            wb = self.qweight.to(torch.bfloat16)
            return torch.nn.functional.linear(xb, wb).float() * self.scale
        y = torch.empty(xb.shape[0], n, dtype=torch.float32)
        buf = torch.empty(rows, k, dtype=torch.bfloat16)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            blk = buf[: r1 - r0]
            blk.copy_(self.qweight[r0:r1])
            y[:, r0:r1] = torch.nn.functional.linear(xb, blk)
        return y.mul_(self.scale)


class Int8DynamicLinear(nn.Module):
    """FBGEMM's dynamic int8 linear: int8 per-channel weights, input quantized per call."""

    qweight: Tensor  # buffers
    scale: Tensor

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        q, s = int8_per_channel(weight)
        self.out_features, self.in_features = q.shape
        self.float_dtype = weight.dtype
        zp = torch.zeros(q.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # quantized-tensor constructors warn (deprecated)
            warnings.simplefilter("ignore")
            qt = torch._make_per_channel_quantized_tensor(q, s.double(), zp, 0)
            self._packed = torch.ops.quantized.linear_prepack(qt, None)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), False)
        # kept for `weight` (the packed copy is opaque): int8, a quarter of float32
        self.register_buffer("qweight", q)
        self.register_buffer("scale", s)

    @property
    def weight(self) -> Tensor:
        return (self.qweight.float() * self.scale[:, None]).to(self.float_dtype)

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, self.in_features).float()  # [M, K]
        # the kernel picks one input scale per call (the whole [M, K] tensor); rows scaled
        # to max |x| = 1 first make that one scale right for every row (per-token
        # quantization), and the row scales are multiplied back on the output
        amax = x2.abs().amax(dim=1, keepdim=True).clamp(min=1e-30)  # [M, 1]
        y = torch.ops.quantized.linear_dynamic((x2 / amax).contiguous(), self._packed, True)
        y = cast(Tensor, y) * amax
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)


QuantLinear = Int8Linear | Int8DynamicLinear


def make_quant_linear(kind: Quantize, weight: Tensor, bias: Tensor | None) -> QuantLinear:
    if kind == "int8":
        return Int8Linear(weight, bias)
    return Int8DynamicLinear(weight, bias)


def fused_modules(model: nn.Module) -> set[int]:
    """ids of modules whose weight a `RowFusion` reads directly (their forward never runs)."""
    out: set[int] = set()
    for m in model.modules():
        for v in vars(m).values():
            if isinstance(v, RowFusion):
                out.update(id(mod) for mod, _ in v.refs)
    return out


def quantize_linears(model: nn.Module, kind: Quantize, skip: tuple[str, ...] = ()) -> int:
    """Replace every eligible `nn.Linear` of `model` by its int8 version; returns how many.

    Eligible: 2-D weight on the CPU, not read through a `RowFusion`, name not containing
    one of `skip` (e.g. "wkv_b", "lm_head": handled by the caller).
    """
    fused = fused_modules(model)
    todo: list[tuple[nn.Module, str, nn.Linear]] = []
    for name, mod in model.named_modules():
        for child_name, child in mod.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if not isinstance(child, nn.Linear) or id(child) in fused:
                continue
            if any(s in full for s in skip) or child.weight.device.type != "cpu":
                continue
            todo.append((mod, child_name, child))
    for parent, child_name, lin in todo:
        setattr(parent, child_name, make_quant_linear(kind, lin.weight, lin.bias))
    return len(todo)


def quant_linear_numel(model: nn.Module) -> int:
    """Weights held as int8 (for parameter counts: they are buffers now)."""
    mods = [m for m in model.modules() if isinstance(m, Int8Linear | Int8DynamicLinear)]
    return sum(int(m.qweight.numel()) for m in mods)
