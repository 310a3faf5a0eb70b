"""Decode-time caches, allocated once per generation by `SWAMLA.setup_cache`.

Layout (B = batch, S = slots):
- linear caches (MLA layers, and SWA layers in "full" mode): slot = absolute token index;
- ring caches (SWA layers in "window" mode): the first `prefix` slots are kept for good
  (left padding + attention sinks), the remaining `window + 1` slots are reused in turn,
  so memory stops growing with the context.
Each cache family keeps `key_pos[B, S]`: the RoPE position of the token in each slot, -1
for an empty slot or a pad. Attention masks are built from these positions alone, which
is what makes ragged batches, sinks and windows one rule.

Recurrent state (v2) does not grow with the context: per DeltaNet layer the state S
`[B, H, d, d]` (float32) and the conv window (the last K-1 pre-convolution q/k/v vectors);
for Engram the last canonical ids and, per Engram layer, the last normalised gated vectors
its dilated convolution reads. `reset` zeroes them: a row starts from zero state.
G7 MLA layers with value embeddings keep each slot's gated value row (`mla_ve`) beside the
latent: a slot cache like `mla_kv`, indexed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class StepContext:
    """What every layer needs for one cached forward call (built once per call)."""

    pos: Tensor  # [B, T] int64, RoPE positions of the new tokens (-1 = pad)
    lin_slots: Tensor  # [T] int64, write slots in linear caches
    lin_mask: Tensor  # [B, 1, T, L] bool over linear slots [:L]
    lin_len: int  # L
    ring_slots: Tensor | None = None  # [T] write slots in ring caches
    ring_keep: Tensor | None = None  # [T] bool: token survives in the ring
    ring_mask: Tensor | None = None  # [B, 1, T, S_ring + T] bool over (ring, new tokens)
    # the new tokens are every row's positions 0..T-1 in an empty cache (a fresh prefill
    # without pads): attention over the linear caches is plain causal attention over them
    causal: bool = False


@dataclass
class Packed:
    """One `forward_cached` call inside `SWAMLA.forward_packed`: the same arguments."""

    idx: Tensor  # [B, T]
    pos: Tensor  # [B, T]
    cache: ModelCache
    ctx: StepContext
    last_only: bool = False


# one call's share of a packed forward (`SWAMLA.forward_packed`): its rows, its tokens per
# row, and the cache and step context it would have been called with
Span = tuple[int, int, "ModelCache", StepContext]


@dataclass
class ModelCache:
    batch: int
    lin_size: int
    lin_key_pos: Tensor  # [B, lin_size]
    swa_k: list[Tensor | None]  # per layer: [B, Hkv, S, hd]
    swa_v: list[Tensor | None]
    mla_kv: list[Tensor | None]  # per layer: [B, S, r + dr] (normalised latent ++ rotated k_pe)
    window_mode: bool = False
    ring_prefix: int = 0
    ring_size: int = 0
    ring_key_pos: Tensor | None = None  # [B, ring_size]
    written: int = 0  # absolute number of token slots written so far (pads included)
    dn_state: list[Tensor | None] = field(default_factory=list)  # per layer: [B, H, d, d] fp32
    dn_conv: list[Tensor | None] = field(default_factory=list)  # per layer: [B, K-1, 3P]
    engram_ids: Tensor | None = None  # [B, max_n - 1] canonical ids before the next token
    engram_conv: list[Tensor | None] = field(default_factory=list)  # per layer: [B, (Kc-1)δ, C]
    # G7 MLA value embeddings, gated, per slot (they enter after W_v, outside the latent)
    mla_ve: list[Tensor | None] = field(default_factory=list)  # per layer: [B, S, H·dv]

    def recurrent(self) -> list[Tensor]:
        """Every tensor a decode step updates in place besides the slot caches."""
        out = [t for t in (*self.dn_state, *self.dn_conv, *self.engram_conv) if t is not None]
        return out + ([self.engram_ids] if self.engram_ids is not None else [])

    def reset(self) -> None:
        self.written = 0
        self.lin_key_pos.fill_(-1)
        if self.ring_key_pos is not None:
            self.ring_key_pos.fill_(-1)
        for t in self.recurrent():
            t.zero_()

    def ring_slot(self, a: int) -> int:
        if a < self.ring_size:
            return a
        span = self.ring_size - self.ring_prefix
        return self.ring_prefix + (a - self.ring_prefix) % span


def visible(key_pos: Tensor, q_pos: Tensor, window: int | None, sinks: int) -> Tensor:
    """Mask [B, 1, T, S]: key j is visible from query i (causal, optional window + sinks).

    A query that would see nothing (a pad) sees every slot instead, so softmax stays
    finite; pads never reach real tokens because their own key_pos is -1.
    """
    kp = key_pos[:, None, None, :]  # [B, 1, 1, S]
    qp = q_pos[:, None, :, None]  # [B, 1, T, 1]
    m = (kp >= 0) & (kp <= qp)
    if window is not None:
        m &= ((qp - kp) <= window) | (kp < sinks)
    empty = ~m.any(dim=-1, keepdim=True)
    return m | empty
