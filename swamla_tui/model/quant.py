"""Int8 weights for CPU decoding: `load(..., quantize="int8")` (the package's loader).

Every big projection (attention, MLP, shared-expert and DeltaNet projections that run as
their own module) is stored as int8 with one symmetric scale per *output* channel
(w ≈ q * s, q in [-127, 127], s = max|w_row| / 127), and the tied LM head gets its own
int8 copy (the embedding stays in the running dtype: a lookup reads one row per token,
so quantizing it saves memory but no time). Left in the running dtype: MLA's `wkv_b`
(the absorbed cached path views its weight per head; 1M values), products fused by
`RowFusion` (DeltaNet/MoE inputs), routed experts, norms and biases.

Two kernels, both maintained by PyTorch (no hand-written dequantize-then-matmul):
- "int8" (weight-only): `aten._weight_int8pack_mm`; the activations stay in floating
  point (bfloat16 for a bfloat16 model, float32 otherwise).
- "int8-dynamic": FBGEMM's dynamic linear (`quantized::linear_dynamic`, the kernel of
  `torch.ao` dynamic quantization): the same int8 weights, and each call also quantizes
  its input to 8 bits (one scale per call, reduce_range for AVX2's 16-bit pair sums).
  On CPUs without AVX-512 (this project's 2-core AMD machine) the weight-only kernel has
  no vectorised path and is slower than float32; this one is the fast int8 there, at a
  measured quality cost (README).
The quantized modules expose `weight` (dequantized, computed on use) for code that reads
shapes or dtypes; the float weights themselves are released.
"""

from __future__ import annotations

import warnings
from typing import Literal, cast, get_args

import torch
from torch import Tensor, nn

from .fuse import RowFusion

Quantize = Literal["int8", "int8-dynamic"]
QUANTIZE_CHOICES: tuple[str, ...] = get_args(Quantize)


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
        # the bfloat16 kernel reads past the row end unless K is a multiple of 32 (it
        # crashed at K = 100 here); float32 activations are exact in the kernel
        if x.dtype == torch.bfloat16 and k % 32 == 0:
            y = torch.ops.aten._weight_int8pack_mm(x2.contiguous(), self.qweight, self.scale_bf16)
        else:
            y = torch.ops.aten._weight_int8pack_mm(
                x2.float().contiguous(), self.qweight, self.scale
            )
        y = cast(Tensor, y).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)


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
