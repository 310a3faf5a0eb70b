"""SWA attention layer (formats v1 §4) and its block.

Quirk kept by default: the training code built a sliding-window mask but attended with a
plain causal mask, so the weights expect *full causal* attention. `window=True` applies
the real window with sinks (an option that bounds memory and changes outputs).
Exception (G3 flash SWA, recognised by `attn.causal_mask` buffers): those layers did apply
their per-layer window w_i (no sinks), so `fixed_window` applies it in every path.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import ModelCache, Span, StepContext, visible
from .config import ModelConfig
from .layers import SwiGLU, apply_rope, make_norm
from .shared_input import SharedInput


class SWAAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        c, hd = cfg.n_embd, cfg.head_dim
        self.n_head, self.n_kv, self.hd = cfg.n_head, cfg.n_kv_head, hd
        self.window, self.sinks = cfg.swa_window, cfg.swa_sink_size
        self.fixed_window = cfg.swa_layer_window(layer) if cfg.swa_flash else None
        self.q_proj = nn.Linear(c, cfg.n_head * hd, bias=cfg.bias)
        self.k_proj = nn.Linear(c, cfg.n_kv_head * hd, bias=cfg.bias)
        self.v_proj = nn.Linear(c, cfg.n_kv_head * hd, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.n_head * hd, c, bias=cfg.bias)
        self.qkv = SharedInput(self, ("q_proj", "k_proj", "v_proj"))  # one product

    def prepare(self, column_major: bool = False) -> None:
        self.qkv.fuse(column_major)

    def _qkv(self, x: Tensor, cs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        h, kv, hd = self.n_head, self.n_kv, self.hd
        y = self.qkv(x)  # [B, T, (H + 2 Hkv) hd]
        # q and k rotated in one call: [B, T, H + Hkv, hd]
        qk = apply_rope(y[..., : (h + kv) * hd].view(b, t, h + kv, hd), cs[:, :, None])
        q, k = torch.split(qk, [h, kv], dim=2)
        v = y[..., (h + kv) * hd :].view(b, t, kv, hd)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H*, T, hd]

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """Grouped-query attention without repeating k/v.

        q: [B, H, T, hd]; k, v: [B, Hkv, S, hd]; mask: [B, 1, T, S] or None (causal, T == S).
        """
        b, h, t, hd = q.shape
        g = h // self.n_kv
        if g == 1:
            if mask is None:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        qg = q.reshape(b, self.n_kv, g * t, hd)  # heads h = kv * g + j, grouped per kv head
        if mask is None:
            s = k.shape[2]
            mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)[None, None]
        mg = mask.expand(b, 1, t, mask.shape[-1]).repeat(1, 1, g, 1)  # [B, 1, g*T, S]
        out = F.scaled_dot_product_attention(qg, k, v, attn_mask=mg)
        return out.view(b, h, t, hd)

    def forward(self, x: Tensor, cs: Tensor, window: bool = False) -> Tensor:
        """Plain full forward from position 0 (the reference path). cs: [1, T, hd/2, 2]."""
        b, t, _ = x.shape
        q, k, v = self._qkv(x, cs)
        mask = None
        if self.fixed_window is not None:
            pos = torch.arange(t, device=x.device)[None]
            mask = visible(pos, pos, self.fixed_window, 0)
        elif window:
            pos = torch.arange(t, device=x.device)[None]
            mask = visible(pos, pos, self.window, self.sinks)
        y = self._attend(q, k, v, mask)
        return cast(Tensor, self.o_proj(y.transpose(1, 2).reshape(b, t, -1)))

    def forward_cached(
        self, x: Tensor, cs: Tensor, layer: int, cache: ModelCache, ctx: StepContext
    ) -> Tensor:
        b, t, _ = x.shape
        y = self._cached(*self._qkv(x, cs), layer, cache, ctx)
        return cast(Tensor, self.o_proj(y.transpose(1, 2).reshape(b, t, -1)))

    def forward_packed(self, x: Tensor, cs: Tensor, layer: int, spans: list[Span]) -> Tensor:
        """`forward_cached` for the tokens of several calls packed into `x` [1, N, C] (see
        `SWAMLA.forward_packed`): the projections once over all, attention per span."""
        qkv = self._qkv(x, cs)  # [1, H*, N, hd] each
        ys, off = [], 0
        for b, t, cache, ctx in spans:
            q, k, v = (z[0, :, off : off + b * t].view(z.shape[1], b, t, -1).transpose(0, 1)
                       for z in qkv)  # fmt: skip
            y = self._cached(q, k, v, layer, cache, ctx)  # [b, H, t, hd]
            ys.append(y.transpose(1, 2).reshape(b * t, -1))
            off += b * t
        return cast(Tensor, self.o_proj(torch.cat(ys)[None]))

    def _cached(
        self, q: Tensor, k: Tensor, v: Tensor, layer: int, cache: ModelCache, ctx: StepContext
    ) -> Tensor:
        """Write the new tokens' keys/values into the cache and attend: [B, H, T, hd].

        The cache may hold float32 for a bfloat16 model (`SWAMLA.setup_cache` on the CPU):
        the keys are stored exactly and attention over the cache runs in float32."""
        kc, vc = cache.swa_k[layer], cache.swa_v[layer]
        assert kc is not None and vc is not None
        kq, vq = k.to(kc.dtype), v.to(vc.dtype)
        if cache.window_mode:
            assert ctx.ring_mask is not None and ctx.ring_slots is not None
            ks = torch.cat((kc, kq), dim=2)  # [B, Hkv, S_ring + T, hd]
            vs = torch.cat((vc, vq), dim=2)
            y = self._attend(q.to(kc.dtype), ks, vs, ctx.ring_mask).to(q.dtype)
            keep = ctx.ring_keep
            slots = ctx.ring_slots if keep is None else ctx.ring_slots[keep]
            kk, vv = (kq, vq) if keep is None else (kq[:, :, keep], vq[:, :, keep])
            kc.index_copy_(2, slots, kk)
            vc.index_copy_(2, slots, vv)
        else:
            kc.index_copy_(2, ctx.lin_slots, kq)
            vc.index_copy_(2, ctx.lin_slots, vq)
            n = ctx.lin_len
            if ctx.causal and self.fixed_window is None:
                # a fresh prefill: the keys are these tokens, and causal attention skips the
                # masked half of the scores (half the work of the mask below at 2,048 tokens)
                y = self._attend(q, k, v, None)
            else:
                mask = ctx.lin_mask
                if self.fixed_window is not None:
                    mask = visible(cache.lin_key_pos[:, :n], ctx.pos, self.fixed_window, 0)
                qc = q.to(kc.dtype)
                y = self._attend(qc, kc[:, :, :n], vc[:, :, :n], mask).to(q.dtype)
        return y


class SWABlock(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        c = cfg.n_embd
        self.norm1 = make_norm(cfg.norm, c)
        self.attn = SWAAttention(cfg, layer)
        self.norm2 = make_norm(cfg.norm, c)
        self.mlp = SwiGLU(c, cfg.mlp_hidden or 4 * c, cfg.bias, silu_first=cfg.silu_first)

    def forward(self, x: Tensor, rope: Tensor, window: bool = False) -> Tensor:
        x = x + self.attn(self.norm1(x), rope, window)
        return cast(Tensor, x + self.mlp(self.norm2(x)))

    def forward_cached(
        self, x: Tensor, rope: Tensor, layer: int, cache: ModelCache, ctx: StepContext
    ) -> Tensor:
        x = x + self.attn.forward_cached(self.norm1(x), rope, layer, cache, ctx)
        return cast(Tensor, x + self.mlp(self.norm2(x)))

    def forward_packed(self, x: Tensor, rope: Tensor, layer: int, spans: list[Span]) -> Tensor:
        x = x + self.attn.forward_packed(self.norm1(x), rope, layer, spans)
        return cast(Tensor, x + self.mlp(self.norm2(x)))
