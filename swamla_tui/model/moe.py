"""MoE and latent MoE feed-forwards of the MLA blocks (formats v2 §6).

Router: a = σ(x Wgᵀ); the top-k of a + expert_bias choose the experts (the bias only
chooses); weights a_sel / (Σ a_sel + 1e-9). Shared experts see x; routed experts see x
(standard) or down_proj(x) (latent, then up_proj of their weighted sum). Every expert is a
SwiGLU with SiLU on the first half. Experts are held in the new layout ([E, D, 2F] and
[E, F, D]; `generation.adapt_weights` transposes the old one).

Two ways to run the routed experts, same function:
- few (token, expert) pairs (decoding): each expert's weight is a table of rows, and
  `embedding_bag` with per-sample weights computes x @ W[e] as a weighted sum of W[e]'s rows
  without copying any weight; the second product folds the routing weights into the same
  call and sums a token's experts directly. No Python loop over tokens or experts.
- many pairs (prefill): pairs are sorted by expert and each expert that received tokens
  runs one matrix product over its tokens (a loop over experts, never over tokens).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MoEConfig
from .fuse import RowFusion
from .layers import SwiGLU


def route(logits: Tensor, expert_bias: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """logits [N, E] -> selected experts [N, k] and their normalised weights [N, k] (float32)."""
    a = torch.sigmoid(logits.float())
    sel = torch.topk(a + expert_bias.float(), k, dim=-1).indices
    s = a.gather(-1, sel)
    return sel, s / (s.sum(-1, keepdim=True) + 1e-9)


class Router(nn.Module):
    expert_bias: Tensor  # a buffer (register_buffer)

    def __init__(self, c: int, n_experts: int) -> None:
        super().__init__()
        self.gate = nn.Linear(c, n_experts, bias=False)
        self.register_buffer("expert_bias", torch.zeros(n_experts))  # trained state: stored


class Experts(nn.Module):
    """Routed experts, new layout: gate_up_weight [E, D, 2F], down_weight [E, F, D]."""

    def __init__(self, e: int, d: int, f: int, bias: bool) -> None:
        super().__init__()
        self.e, self.d, self.f = e, d, f
        self.gate_up_weight = nn.Parameter(torch.zeros(e, d, 2 * f))
        self.down_weight = nn.Parameter(torch.zeros(e, f, d))
        self.gate_up_bias = nn.Parameter(torch.zeros(e, 2 * f)) if bias else None
        self.down_bias = nn.Parameter(torch.zeros(e, d)) if bias else None

    def prepare(self) -> None:
        """Contiguous weights (old-layout tensors arrive transposed) for the row-table view."""
        with torch.no_grad():
            for p in (self.gate_up_weight, self.down_weight):
                if not p.is_contiguous():
                    p.data = p.data.contiguous()

    def forward(self, x: Tensor, sel: Tensor, w: Tensor) -> Tensor:
        """x [N, D], sel / w [N, k] -> Σ_j w_j expert_{sel_j}(x) [N, D]."""
        n, k = sel.shape
        if n * k <= 2 * self.e:
            return self._pairs(x, sel, w)
        return self._grouped(x, sel, w)

    def _pairs(self, x: Tensor, sel: Tensor, w: Tensor) -> Tensor:
        n, k = sel.shape
        e, d, f = self.e, self.d, self.f
        dev = x.device
        gu = self.gate_up_weight.contiguous().view(e * d, 2 * f)  # row e*D + i: W[e][i]
        rows = (sel[..., None] * d + torch.arange(d, device=dev)).view(-1)  # [N*k*D]
        psw = x[:, None, :].expand(n, k, d).reshape(-1)
        h = F.embedding_bag(
            rows, gu, torch.arange(0, n * k * d, d, device=dev), mode="sum", per_sample_weights=psw
        )  # [N*k, 2F]: x_n @ W_gu[sel]
        if self.gate_up_bias is not None:
            h = h + self.gate_up_bias[sel.view(-1)]
        a = F.silu(h[:, :f]) * h[:, f:] * w.reshape(-1, 1).to(h.dtype)  # [N*k, F]
        dw = self.down_weight.contiguous().view(e * f, d)
        rows2 = (sel[..., None] * f + torch.arange(f, device=dev)).view(-1)  # [N*k*F]
        y = F.embedding_bag(
            rows2,
            dw,
            torch.arange(0, n * k * f, k * f, device=dev),  # one bag per token: its k experts
            mode="sum",
            per_sample_weights=a.reshape(-1),
        )  # [N, D]
        if self.down_bias is not None:
            y = y + (w[..., None].to(y.dtype) * self.down_bias[sel]).sum(1)
        return y

    def _grouped(self, x: Tensor, sel: Tensor, w: Tensor) -> Tensor:
        n, k = sel.shape
        flat = sel.reshape(-1)
        order = torch.argsort(flat, stable=True)
        tok = order // k  # the token of each sorted pair
        wts = w.reshape(-1)[order].to(x.dtype)
        counts = torch.bincount(flat, minlength=self.e).tolist()
        y = torch.zeros(n, self.d, dtype=x.dtype, device=x.device)
        start = 0
        for e, cnt in enumerate(counts):
            if not cnt:
                continue
            ids = tok[start : start + cnt]
            h = x[ids] @ self.gate_up_weight[e]  # [cnt, 2F]
            if self.gate_up_bias is not None:
                h = h + self.gate_up_bias[e]
            ye = (F.silu(h[:, : self.f]) * h[:, self.f :]) @ self.down_weight[e]  # [cnt, D]
            if self.down_bias is not None:
                ye = ye + self.down_bias[e]
            y.index_add_(0, ids, ye * wts[start : start + cnt, None])
            start += cnt
        return y


RouteHook = Callable[[Tensor, Tensor, Tensor], None]
"""Sees one forward's routing: (router logits [..., E], chosen [..., k], weights [..., k])
shaped as the input's leading dims (`engine.routing` installs and removes it)."""


class MoE(nn.Module):
    """`ffn` of an MLA block: MoELayer (standard) or LatentMoELayer (latent).

    `record`: None except while a `engine.routing` recorder is installed: then it sees each
    forward's routing. One attribute check per call when off: no tensor work, no sync.
    """

    def __init__(self, c: int, cfg: MoEConfig, bias: bool) -> None:
        super().__init__()
        self.cfg = cfg
        self.record: RouteHook | None = None
        self.router = Router(c, cfg.n_experts)
        self.shared_experts = nn.ModuleList(
            SwiGLU(c, cfg.shared_dim, bias, silu_first=True) for _ in range(cfg.n_shared)
        )
        if cfg.latent:
            self.down_proj = nn.Linear(c, cfg.width, bias=False)
            self.up_proj = nn.Linear(cfg.width, c, bias=False)
        self.experts = Experts(cfg.n_experts, cfg.width, cfg.expert_dim, cfg.expert_bias)
        # one product for everything that reads x: router, shared gate_up, latent down
        refs = [(self.router.gate, "weight")]
        refs += [(s.gate_up_proj, "weight") for s in self._shared()]
        if cfg.latent:
            refs.append((self.down_proj, "weight"))
        self._in = RowFusion(refs)
        self._split = [cfg.n_experts] + [2 * cfg.shared_dim] * cfg.n_shared
        self._split += [cfg.width] if cfg.latent else []

    def _shared(self) -> list[SwiGLU]:
        """The shared experts, typed (a ModuleList yields plain Modules)."""
        return [cast(SwiGLU, s) for s in self.shared_experts]

    def prepare(self, column_major: bool = False) -> None:
        self._in.fuse(column_major)
        self.experts.prepare()

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        xf = x.reshape(-1, shape[-1])  # [N, C]
        parts = torch.split(F.linear(xf, self._in.get()), self._split, dim=-1)
        sel, w = route(parts[0], self.router.expert_bias, self.cfg.top_k)
        if self.record is not None:
            lead = shape[:-1]
            self.record(parts[0].view(*lead, -1), sel.view(*lead, -1), w.view(*lead, -1))
        routed = self.experts(parts[-1] if self.cfg.latent else xf, sel, w)
        y = self.up_proj(routed) if self.cfg.latent else routed
        for j, s in enumerate(self._shared()):
            h = parts[1 + j]
            if s.gate_up_proj.bias is not None:
                h = h + s.gate_up_proj.bias
            a, b = h.chunk(2, dim=-1)
            y = y + s.down_proj(F.silu(a) * b)
        return cast(Tensor, y.view(shape))
