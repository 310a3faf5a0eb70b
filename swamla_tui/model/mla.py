"""MLA attention layer (formats v1 §5, formats v2 §3) and its block.

Quirk kept for G1-G4: `q_pe` is rotated by *head index*, not by token position (the
original applied RoPE while the head axis stood where the position axis belongs); G5-G6
rotate it at the token position like k_pe. From G2 each layer has its own kv rank.
The block's feed-forward is a SwiGLU MLP or a (latent) MoE, optionally preceded by Engram.
G7 adds value embeddings (kept per token beside the latent in the cache, since they enter
after `W_v`), FoPE in place of RoPE, and YaRN's softmax factor (formats G7 §4, §6, §11).
The full forward expands the latent into per-head keys/values; the cached path keeps
only the normalised latent `c_n` and the rotated `k_pe`, with `W_k` absorbed into the
query and `W_v` applied after the weighted sum (320 values per token in the 262M model).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import ModelCache, Span, StepContext
from .config import ModelConfig
from .engram import Engram
from .g7 import FoPE, add_value_embeds, value_term
from .layers import SwiGLU, apply_rope, make_norm, rope_tables
from .moe import MoE
from .shared_input import SharedInput


class MLAAttention(nn.Module):
    q_rope: Tensor  # a buffer (register_buffer), rebuilt by SWAMLA.init_buffers
    value_embeds: nn.Embedding  # G7 even layers
    ve_gate: nn.Linear

    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        c, h = cfg.n_embd, cfg.n_head
        self.h, self.r = h, cfg.kv_rank(layer)
        self.q_by_position = cfg.q_pe_by_position
        self.dn, self.dr, self.dv = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        # YaRN changes nothing but this factor (formats G7 §11); 1.0 otherwise
        self.scale = (self.dn + self.dr) ** -0.5 * cfg.attn_factor
        self.rope: FoPE | None = FoPE(cfg.fope, self.dr) if cfg.fope is not None else None
        self.has_ve = cfg.ve_layer(layer) > 0
        if self.has_ve:  # formats G7 §4: v_h += gate · ve[h·dv:(h+1)·dv] (rows: often 50304)
            add_value_embeds(self, cfg.ve_layer(layer), h * self.dv, cfg.ve_gate_dim)
        qd = h * (self.dn + self.dr)
        if cfg.q_lora_rank > 0:
            self.wq_a = nn.Linear(c, cfg.q_lora_rank, bias=cfg.bias)
            self.q_norm = nn.LayerNorm(cfg.q_lora_rank, eps=1e-5)
            self.wq_b = nn.Linear(cfg.q_lora_rank, qd, bias=cfg.bias)
        else:
            self.wq = nn.Linear(c, qd, bias=cfg.bias)
        self.wkv_a = nn.Linear(c, self.r + self.dr, bias=cfg.bias)
        # the query's first product and the latent's read the same input: one product
        self.q_kv = SharedInput(self, ("wq_a" if cfg.q_lora_rank > 0 else "wq", "wkv_a"))
        self.kv_norm = nn.LayerNorm(self.r, eps=1e-5)
        self.wkv_b = nn.Linear(self.r, h * (self.dn + self.dv), bias=cfg.bias)
        self.wo = nn.Linear(h * self.dv, c, bias=cfg.bias)
        # The quirk: head h's q_pe uses the angle of *position h*.
        self.register_buffer("q_rope", rope_tables(self.dr, h), persistent=False)  # [H, dr/2, 2]
        # a float32 copy of wkv_b and the weight's data_ptr it was made from (`absorb_in_float32`)
        self._wkv_b32: tuple[Tensor, int] | None = None
        # the absorbed path's per-head layout of that weight, on the CPU (`_per_head`)
        self._per_head_copy: tuple[tuple[int, torch.dtype, int], Tensor, Tensor] | None = None

    def absorb_in_float32(self) -> None:
        """Run the cached path's absorbed products and latent attention in float32.

        For bfloat16 on CPUs without bfloat16 instructions, where PyTorch's bfloat16
        `bmm`/`einsum` is several times slower than float32 (about 1 ms per call at a
        32-token context in the 262M model); the copy is 4 bytes x r x H(dn+dv) per layer.
        """
        w = self.wkv_b.weight.detach()
        self._wkv_b32 = (w.float(), w.data_ptr())

    def prepare(self, column_major: bool = False) -> None:
        self.q_kv.fuse(column_major)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The first query product (`wq`, or `wq_a` with a query rank) and `wkv_a`'s."""
        y = self.q_kv(x)
        n = y.shape[-1] - (self.r + self.dr)
        return y[..., :n], y[..., n:]

    def _query(self, q_in: Tensor, cs: Tensor) -> tuple[Tensor, Tensor]:
        """q_in: `_project`'s first part; cs: the tokens' RoPE table [B|1, T, dr/2, 2]
        (used from G5 on)."""
        b, t, _ = q_in.shape
        q = self.wq_b(self.q_norm(q_in)) if hasattr(self, "wq_a") else q_in
        q = q.reshape(b, t, self.h, self.dn + self.dr)  # [B, T, H, dn+dr]
        q_nope, q_pe = q.split((self.dn, self.dr), dim=-1)
        if self.q_by_position:
            q_pe = apply_rope(q_pe, cs[:, :, None])  # at the token's position (G5+)
        else:
            q_pe = apply_rope(q_pe, self.q_rope)  # rotated by head index (quirk, G1-G4)
        return q_nope, q_pe

    def _latent(self, kv_in: Tensor, cs: Tensor) -> tuple[Tensor, Tensor]:
        c, k_pe = torch.split(kv_in, [self.r, self.dr], dim=-1)  # [B, T, r], [B, T, dr]
        return self.kv_norm(c), apply_rope(k_pe, cs)

    def _values(self, x: Tensor, ids: Tensor | None) -> Tensor | None:
        """gate · value_embeds[ids] [B, T, H·dv], or None for a layer without them."""
        if not self.has_ve:
            return None
        if ids is None:
            raise ValueError("an MLA layer with value embeddings needs the token ids")
        return value_term(self.value_embeds, self.ve_gate, x, ids)

    def forward(self, x: Tensor, cs: Tensor, ids: Tensor | None = None) -> Tensor:
        """Reference path: expand keys/values per head, plain causal attention."""
        b, t, _ = x.shape
        q_in, kv_in = self._project(x)
        q_nope, q_pe = self._query(q_in, cs)
        c_n, k_pe = self._latent(kv_in, cs)
        kv = self.wkv_b(c_n).view(b, t, self.h, self.dn + self.dv)
        k_nope, v = kv.split((self.dn, self.dv), dim=-1)  # [B, T, H, dn], [B, T, H, dv]
        ve = self._values(x, ids)
        if ve is not None:
            v = v + ve.view(b, t, self.h, self.dv)
        q = torch.cat((q_nope, q_pe), dim=-1).transpose(1, 2)  # [B, H, T, dn+dr]
        k_pe_h = k_pe[:, :, None, :].expand(b, t, self.h, self.dr)
        k = torch.cat((k_nope, k_pe_h), dim=-1).transpose(1, 2)  # [B, H, T, dn+dr]
        y = self._attend(q, k, v.transpose(1, 2), None)  # [B, H, T, dv]
        return cast(Tensor, self.wo(y.transpose(1, 2).reshape(b, t, self.h * self.dv)))

    def _float32_weight(self) -> Tensor | None:
        f32 = self._wkv_b32
        if f32 is not None and f32[1] == self.wkv_b.weight.data_ptr():  # still the same weight
            return f32[0]
        return None

    def _per_head(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """`W_k` [H, dn, r] and `W_v` transposed [H, r, dv] of `w` (wkv_b's weight or its
        float32 copy). On the CPU contiguous copies, kept while `w` is the same tensor: a
        bfloat16 batched product over a transposed view runs 6x slower (0.53 vs 0.08 ms
        per layer and step on the 262M model); 2 bytes x H(dn+dv)r per layer in bfloat16."""
        wh = w.view(self.h, self.dn + self.dv, self.r)
        w_k, w_vt = wh[:, : self.dn], wh[:, self.dn :].transpose(1, 2)
        if w.device.type != "cpu":
            return w_k, w_vt
        try:  # changed in place (an A/B test's noise on the weights) = another version
            key = (w.data_ptr(), w.dtype, w._version)
        except RuntimeError:  # an inference tensor has no version counter: no copy kept
            return w_k.contiguous(), w_vt.contiguous()
        if self._per_head_copy is None or self._per_head_copy[0] != key:
            self._per_head_copy = (key, w_k.contiguous(), w_vt.contiguous())
        return self._per_head_copy[1], self._per_head_copy[2]

    def _expansion_pays(self, t: int, n: int) -> bool:
        """Per-head keys/values for a block of `t` queries over `n` cached tokens, or the
        absorbed products? Expanding costs `n·r·(dn+dv)` per head once, then `dn+dr+dv` per
        (query, key) pair; absorbing costs `r·(dn+dv)` per query and `2r+dr` per pair. A
        decode step (t = 1) always absorbs; a long prompt chunk expands (and its attention
        then runs in the fused kernel, without the float32 score matrix)."""
        r, dn, dr, dv = self.r, self.dn, self.dr, self.dv
        expanded = n * r * (dn + dv) + t * n * (dn + dr + dv)
        absorbed = t * r * (dn + dv) + t * n * (2 * r + dr)
        return expanded < absorbed

    def _expanded(
        self, q_nope: Tensor, q_pe: Tensor, lat: Tensor, ve: Tensor | None, mask: Tensor | None
    ) -> Tensor:
        """Attention [B, T, H, dv] with keys/values expanded from the latents `lat` [B, N, r+dr]
        (the reference path's formulation); `mask` [B, 1, T, N], or None for causal (N == T)."""
        b, t = q_nope.shape[:2]
        n = lat.shape[1]
        c_n, k_pe = torch.split(lat, [self.r, self.dr], dim=-1)
        w = self._float32_weight()
        if w is not None:  # see absorb_in_float32
            c_n, k_pe, q_nope, q_pe = c_n.float(), k_pe.float(), q_nope.float(), q_pe.float()
        else:
            w = self.wkv_b.weight
        bias = self.wkv_b.bias
        # 2-D input: a strided 3-D slice of the cache made `matmul` copy the weight once per
        # row (a [16, 256, 4096] copy per layer, 36 ms, in a bfloat16 prefill of 16 prompts)
        kv = F.linear(c_n.reshape(b * n, self.r), w, None if bias is None else bias.to(w.dtype))
        kv = kv.view(b, n, self.h, self.dn + self.dv)
        k_nope, v = torch.split(kv, [self.dn, self.dv], dim=-1)
        if ve is not None:
            v = v + ve.view(b, n, self.h, self.dv).to(v.dtype)
        q = torch.cat((q_nope, q_pe), dim=-1).transpose(1, 2)  # [B, H, T, dn+dr]
        k_pe_h = k_pe[:, :, None, :].expand(b, n, self.h, self.dr)
        k = torch.cat((k_nope, k_pe_h), dim=-1).transpose(1, 2)  # [B, H, N, dn+dr]
        return self._attend(q, k, v.transpose(1, 2), mask).transpose(1, 2)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """Per-head attention [B, H, T, dv]; `mask` None: causal.

        PyTorch's fused CPU kernel wants one head size for q, k and v (else it falls back to
        unfused math, 4x slower at 2,048 tokens): zero columns change no score and no value.
        """
        d = max(self.dn + self.dr, self.dv)
        q, k, v = (F.pad(z, (0, d - z.shape[-1])) if z.shape[-1] < d else z for z in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, scale=self.scale
        )  # [B, H, T, d]
        return y[..., : self.dv]

    def _absorbed(
        self, q_nope: Tensor, q_pe: Tensor, lat: Tensor, vec: Tensor | None, mask: Tensor
    ) -> Tensor:
        """Attention [B, T, H, dv] straight on the latents `lat` [B, N, r+dr]: `W_k` absorbed
        into the query, `W_v` applied after the weighted sum (the decode step's path)."""
        b, t = q_nope.shape[:2]
        n = lat.shape[1]
        w = self._float32_weight()
        if w is not None:  # see absorb_in_float32
            lat, q_nope, q_pe = lat.float(), q_nope.float(), q_pe.float()
        else:
            w = self.wkv_b.weight
        w_k, w_vt = self._per_head(w)  # [H, dn, r], [H, r, dv]
        h = self.h
        q_lat = torch.bmm(q_nope.permute(2, 0, 1, 3).reshape(h, b * t, self.dn), w_k)
        q_lat = q_lat.view(h, b, t, self.r).transpose(0, 1)  # [B, H, T, r]
        q_all = torch.cat((q_lat, q_pe.transpose(1, 2)), dim=-1)  # [B, H, T, r+dr]
        # heads and queries folded into one axis: a plain bmm, no per-head copy of the cache
        q_all = q_all.reshape(b, self.h * t, -1)  # [B, H*T, r+dr]
        scores = torch.bmm(q_all, lat.transpose(1, 2)).float() * self.scale  # [B, H*T, N]
        scores = scores.view(b, self.h, t, n).masked_fill(~mask, float("-inf"))
        p = torch.softmax(scores, dim=-1).to(lat.dtype).view(b, self.h * t, n)
        o_lat = torch.bmm(p, lat[..., : self.r]).view(b, self.h, t, self.r)  # [B, H, T, r]
        y = torch.bmm(o_lat.transpose(0, 1).reshape(h, b * t, self.r), w_vt)  # [H, B*T, dv]
        y = y.view(h, b, t, self.dv).permute(1, 2, 0, 3)  # [B, T, H, dv]
        if vec is not None:  # Σ_j p_j · gate_j ve_j, per head
            ve_all = vec.view(b, n, self.h, self.dv).to(p.dtype)
            y = y + torch.einsum("bhtn,bnhv->bthv", p.view(b, self.h, t, n), ve_all)
        if self.wkv_b.bias is not None:
            y = y + self.wkv_b.bias.view(self.h, self.dn + self.dv)[:, self.dn :]
        return y

    def forward_cached(
        self,
        x: Tensor,
        cs: Tensor,
        layer: int,
        cache: ModelCache,
        ctx: StepContext,
        ids: Tensor | None = None,
    ) -> Tensor:
        b, t, _ = x.shape
        q_in, kv_in = self._project(x)
        q_nope, q_pe = self._query(q_in, cs)
        c_n, k_pe = self._latent(kv_in, cs)
        ve = self._values(x, ids)
        y = self._cached(q_nope, q_pe, torch.cat((c_n, k_pe), dim=-1), ve, layer, cache, ctx)
        return cast(Tensor, self.wo(y.to(x.dtype).reshape(b, t, self.h * self.dv)))

    def forward_packed(
        self, x: Tensor, cs: Tensor, layer: int, spans: list[Span], ids: Tensor | None
    ) -> Tensor:
        """`forward_cached` for the tokens of several calls packed into `x` [1, N, C] (see
        `SWAMLA.forward_packed`): the projections once over all, attention per span."""
        q_in, kv_in = self._project(x)
        q_nope, q_pe = self._query(q_in, cs)
        lat = torch.cat(self._latent(kv_in, cs), dim=-1)
        ve = self._values(x, ids)
        ys, off = [], 0
        for b, t, cache, ctx in spans:
            q_n, q_p, la = (z[0, off : off + b * t].view(b, t, *z.shape[2:])
                            for z in (q_nope, q_pe, lat))  # fmt: skip
            vs = None if ve is None else ve[0, off : off + b * t].view(b, t, -1)
            y = self._cached(q_n, q_p, la, vs, layer, cache, ctx)
            ys.append(y.to(x.dtype).reshape(b * t, self.h * self.dv))
            off += b * t
        return cast(Tensor, self.wo(torch.cat(ys)[None]))

    def _cached(
        self,
        q_nope: Tensor,
        q_pe: Tensor,
        new: Tensor,
        ve: Tensor | None,
        layer: int,
        cache: ModelCache,
        ctx: StepContext,
    ) -> Tensor:
        """Write the new tokens' latents `new` [B, T, r+dr] (and value terms) into the
        cache and attend over it: [B, T, H, dv]."""
        t = q_nope.shape[1]
        kvc = cache.mla_kv[layer]
        assert kvc is not None
        kvc.index_copy_(1, ctx.lin_slots, new.to(kvc.dtype))
        vec = cache.mla_ve[layer] if ve is not None else None
        if ve is not None:  # value embeddings are per token: kept beside the latent
            assert vec is not None
            vec.index_copy_(1, ctx.lin_slots, ve.to(vec.dtype))
        n = t if ctx.causal else ctx.lin_len  # a fresh prefill: the keys are these tokens
        lat, ven = kvc[:, :n], (vec[:, :n] if vec is not None else None)
        if ctx.causal:
            y = self._expanded(q_nope, q_pe, lat, ven, None)
        elif self._expansion_pays(t, n):
            y = self._expanded(q_nope, q_pe, lat, ven, ctx.lin_mask)
        else:
            y = self._absorbed(q_nope, q_pe, lat, ven, ctx.lin_mask)
        return y


class MLABlock(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        c = cfg.n_embd
        if cfg.engram is not None and layer in cfg.engram.layers:
            self.engram = Engram(c, cfg.engram)
        self.attn_norm = make_norm(cfg.norm, c)
        self.attn = MLAAttention(cfg, layer)
        self.ffn_norm = make_norm(cfg.norm, c)
        self.ffn: SwiGLU | MoE = (
            MoE(c, cfg.moe, cfg.bias)
            if cfg.moe is not None
            else SwiGLU(c, cfg.mlp_hidden or 4 * c, cfg.bias, silu_first=cfg.silu_first)
        )

    @property
    def has_engram(self) -> bool:
        return hasattr(self, "engram")

    def rope_for(self, rope: Tensor, pos: Tensor) -> Tensor:
        """The shared RoPE rows, or this layer's FoPE table at `pos` [B|1, T] (formats G7 §6)."""
        fope = self.attn.rope
        return rope if fope is None else fope.table(pos)

    def forward(self, x: Tensor, rope: Tensor, ids: Tensor | None = None) -> Tensor:
        """The block after Engram (the model adds Engram's output, which needs the ids)."""
        x = x + self.attn(self.attn_norm(x), rope, ids)
        return cast(Tensor, x + self.ffn(self.ffn_norm(x)))

    def forward_cached(
        self,
        x: Tensor,
        rope: Tensor,
        layer: int,
        cache: ModelCache,
        ctx: StepContext,
        ids: Tensor | None = None,
    ) -> Tensor:
        x = x + self.attn.forward_cached(self.attn_norm(x), rope, layer, cache, ctx, ids)
        return cast(Tensor, x + self.ffn(self.ffn_norm(x)))

    def forward_packed(
        self, x: Tensor, rope: Tensor, layer: int, spans: list[Span], ids: Tensor | None = None
    ) -> Tensor:
        """`forward_cached` over packed tokens (`SWAMLA.forward_packed`; no Engram)."""
        x = x + self.attn.forward_packed(self.attn_norm(x), rope, layer, spans, ids)
        return cast(Tensor, x + self.ffn(self.ffn_norm(x)))
