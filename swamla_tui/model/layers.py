"""Building blocks shared by the layer kinds: norms, RoPE, SwiGLU MLP (formats v1 §3, formats v2 §3)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """RMSNorm computed in float32; the cast back happens *before* the weight multiply."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            # the same function in one fused op (decoding runs a few dozen norms per token)
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class DynamicTanh(nn.Module):
    """DyT: tanh(alpha * x) * weight + bias, the norm-free alternative some runs use.

    The trainer stores `alpha` as a 0-dimensional scalar; the loader reshapes it to [1]
    (`generation.adapt_weights`), which broadcasts the same.
    """

    def __init__(self, dim: int, alpha_shape: tuple[int, ...] = (1,)) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full(alpha_shape, 0.5))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.alpha * x) * self.weight + self.bias


def make_norm(kind: str, dim: int) -> nn.Module:
    return DynamicTanh(dim) if kind == "dyt" else RMSNorm(dim)


class SwiGLU(nn.Module):
    """gate_up_proj -> halves (a, b) -> down_proj(a * silu(b)).

    SiLU on the *second* half (G1-G5), or on the *first* (`silu_first`: G6's fused Triton
    kernel, and every MoE shared expert), formats v2 §3.1.
    """

    def __init__(self, dim: int, hidden: int, bias: bool = False, silu_first: bool = False) -> None:
        super().__init__()
        self.silu_first = silu_first
        self.gate_up_proj = nn.Linear(dim, 2 * hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.gate_up_proj(x).chunk(2, dim=-1)
        if self.silu_first:
            return cast(Tensor, self.down_proj(F.silu(a) * b))
        return cast(Tensor, self.down_proj(a * F.silu(b)))


def rope_tables(dim: int, n_pos: int, device: torch.device | str | None = None) -> Tensor:
    """cos/sin for interleaved RoPE: returns [n_pos, dim // 2, 2] float32 (cos, sin)."""
    inv = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)
    ang = torch.arange(n_pos, dtype=torch.float64, device=device)[:, None] * inv[None, :]
    return torch.stack((ang.cos(), ang.sin()), dim=-1).float()


def apply_rope(x: Tensor, cs: Tensor) -> Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]).

    x: [..., D]; cs: [..., D // 2, 2] broadcastable to x's leading dims.
    The rotation runs in float32 and is cast back to x's dtype.
    """
    xf = torch.unflatten(x.float(), -1, (-1, 2))  # [..., D/2, 2]
    try:  # one complex product (x0 + i x1)(cos + i sin), not seven kernels: a decode step
        # rotates 24 vectors in the 262M model, and on the CPU each kernel costs its call
        rot = torch.view_as_complex(xf) * torch.view_as_complex(cs)
        return torch.view_as_real(rot).flatten(-2).to(x.dtype)
    except RuntimeError:  # a layout view_as_complex cannot view (odd strides): the same sums
        x0, x1 = xf[..., 0], xf[..., 1]
        cos, sin = cs[..., 0], cs[..., 1]
        out = torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1)
        return out.flatten(-2).to(x.dtype)
