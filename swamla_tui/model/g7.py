"""What the trainer's 2026 code ("G7", G7 spec) adds to a layer: value embeddings, FoPE,
and the migration of its fused DeltaNet keys.

- value embeddings (formats G7 §4): on even layers a per-token value row, gated by the normalised
  block input, is added to the values (DeltaNet: before the short convolution; MLA: per
  head after `wkv_b`). It needs the raw token ids, so every path passes them down.
- `FoPE` (formats G7 §6): MLA's q_pe/k_pe rotation with trained Fourier coefficients. Its cos/sin
  depend on the weights, so they are computed at the positions asked for on every call
  (as the trainer does) instead of being cached in a table that a weight edit would stale.
- `split_fused_deltanet` (formats G7 §7): `g_beta_proj` / `qkv_conv` are the old `g_proj`+`beta_proj`
  and `q|k|v_conv` concatenated in that order, so the loader splits them into views and
  one DeltaNet layer serves both key sets.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .config import FoPEConfig

_FUSED_GB = "attn.g_beta_proj.weight"
_FUSED_CONV = "attn.qkv_conv."


def add_value_embeds(attn: nn.Module, rows: int, width: int, gate_dim: int) -> None:
    """Give an attention module `value_embeds [Vve, W]` and `ve_gate [1, G]` (no bias):
    attributes of the attention itself, so the keys are `attn.value_embeds.weight`."""
    setattr(attn, "value_embeds", nn.Embedding(rows, width))  # noqa: B010 - a typed nn.Module
    setattr(attn, "ve_gate", nn.Linear(gate_dim, 1, bias=False))  # noqa: B010


def value_term(table: nn.Embedding, gate: nn.Linear, u: Tensor, ids: Tensor) -> Tensor:
    """gate · value_embeds[ids]: [B, T, W] for u [B, T, C] (the normalised block input).

    gate = 2σ(u[..., :G] @ ve_gate.T), one scalar per token in (0, 2); G from the shape.
    A table with fewer rows than the vocabulary (MLA tables have 50304 whatever the
    vocabulary, formats G7 §4) gives ids past its end no value row (the loader says so once).
    """
    g = gate.weight.shape[1]
    z = 2.0 * torch.sigmoid(nn.functional.linear(u[..., :g], gate.weight))
    rows = table.weight.shape[0]
    inside = (ids < rows).unsqueeze(-1)
    row = nn.functional.embedding(ids.clamp(max=rows - 1), table.weight).to(u.dtype)
    return z * row * inside


class FoPE(nn.Module):
    """`attn.rope.{sin,cos}_coef [Na, Nh]`: a per-layer table like `layers.rope_tables`.

    `table(pos)` returns [..., dr/2, 2] (Cc, S) for `layers.apply_rope`, whose rotation
    `x0·cos − x1·sin, x1·cos + x0·sin` is exactly FoPE's step 5 with cos = Cc, sin = S.
    """

    inv_freq: Tensor  # non-persistent buffer, rebuilt by `init_buffers`

    def __init__(self, cfg: FoPEConfig, rope_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.dim = rope_dim
        self.sin_coef = nn.Parameter(torch.zeros(cfg.n_active, cfg.n_harmonics))
        self.cos_coef = nn.Parameter(torch.zeros(cfg.n_active, cfg.n_harmonics))
        self.register_buffer("inv_freq", self._inv(None), persistent=False)

    def _inv(self, device: torch.device | str | None) -> Tensor:
        j = torch.arange(0, self.dim, 2, dtype=torch.float32, device=device)
        return 1.0 / (self.cfg.theta ** (j / self.dim))

    def init_buffers(self, device: torch.device | str | None) -> None:
        self.inv_freq = self._inv(device)

    def table(self, pos: Tensor) -> Tensor:
        """cos/sin [*pos.shape, dr/2, 2] (float32) at integer positions `pos`."""
        c = self.cfg
        sc, cc = self.sin_coef.float(), self.cos_coef.float()
        nh = c.n_harmonics
        ones = sc.new_ones(c.n_active, 1)
        ws = torch.cat((ones, sc[:, 1:]), dim=1)  # harmonic 1 has weight 1; column 0 unused
        wc = torch.cat((ones, cc[:, 1:]), dim=1)
        nf = torch.sqrt(1.0 + (nh - 1) * sc[:, 1:].pow(2).mean()) if nh > 1 else sc.new_ones(())
        nf = nf.clamp(min=1.0)
        harm = torch.arange(1, nh + 1, dtype=torch.float32, device=sc.device)
        inv = self.inv_freq[c.n_floor :].float()  # [Na]
        ang = (pos.float()[..., None] * inv)[..., None] * harm  # [..., Na, Nh]
        s = (ang.sin() * ws).sum(-1) / nf
        co = (ang.cos() * wc).sum(-1) / nf
        active = torch.stack((co, s), dim=-1)  # [..., Na, 2]
        if not c.n_floor:
            return active
        floor = torch.zeros(*pos.shape, c.n_floor, 2, dtype=torch.float32, device=sc.device)
        floor[..., 0] = 1.0
        return torch.cat((floor, active), dim=-2)


def split_fused_deltanet(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """G7's fused DeltaNet keys as the unfused ones (views, no copies); others unchanged.

    rows 0..H-1 of g_beta_proj are g_proj, H..2H-1 beta_proj; qkv_conv's channels are q's,
    k's, v's in that order (with shared q/k too: the q copy and the k copy each have
    their own channels).
    """
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        if k.endswith(_FUSED_GB) and v.ndim == 2 and v.shape[0] % 2 == 0:
            pre = k[: -len(_FUSED_GB)]
            g, b = v.chunk(2, dim=0)
            out[pre + "attn.g_proj.weight"], out[pre + "attn.beta_proj.weight"] = g, b
            continue
        i = k.rfind(_FUSED_CONV)
        tail = k[i + len(_FUSED_CONV) :] if i >= 0 else ""
        if tail in ("weight", "bias") and v.ndim >= 1 and v.shape[0] % 3 == 0:
            pre = k[:i]
            for name, part in zip("qkv", v.chunk(3, dim=0), strict=True):
                out[f"{pre}attn.{name}_conv.conv.{tail}"] = part
            continue
        out[k] = v
    return out


def has_fused_deltanet(sd: Mapping[str, object]) -> bool:
    return any(k.endswith(_FUSED_GB) or _FUSED_CONV in k for k in sd)
