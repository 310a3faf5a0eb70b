"""The SWA-MLA transformer: tied embeddings, a stack of SWA/MLA blocks, RMS/DyT final norm."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .cache import ModelCache, StepContext, visible
from .config import ModelConfig
from .layers import make_norm, rope_tables
from .mla import MLABlock
from .swa import SWABlock


def wants_column_major(name: str, shape: torch.Size | tuple[int, ...]) -> bool:
    """The CPU decode layout's rule (see `SWAMLA.use_cpu_decode_layout`)."""
    return len(shape) == 2 and shape[0] >= shape[1] and "wkv_b" not in name


class SWAMLA(nn.Module):
    def __init__(self, cfg: ModelConfig, *, swa_window: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.swa_window = swa_window  # False: full causal SWA layers, as trained (spec §4)
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(cfg.vocab_size, cfg.n_embd),
                "h": nn.ModuleList(
                    SWABlock(cfg) if kind == "swa" else MLABlock(cfg) for kind in cfg.layer_kinds
                ),
                "ln_f": make_norm(cfg.norm, cfg.n_embd),
            }
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied
        n_pos = cfg.block_size
        self.register_buffer("rope_swa", rope_tables(cfg.head_dim, n_pos), persistent=False)
        self.register_buffer(
            "rope_mla", rope_tables(max(cfg.qk_rope_head_dim, 2), n_pos), persistent=False
        )

    def init_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)build the RoPE tables in float32 on `device`.

        They are derived, not stored: a model built on the meta device (to load weights
        without a random-init copy) or cast to a low-precision dtype needs them rebuilt.
        """
        cfg = self.cfg
        self.rope_swa = rope_tables(cfg.head_dim, cfg.block_size, device)
        self.rope_mla = rope_tables(max(cfg.qk_rope_head_dim, 2), cfg.block_size, device)
        for blk in self.transformer.h:
            if isinstance(blk, MLABlock):
                blk.attn.q_rope = rope_tables(cfg.qk_rope_head_dim, cfg.n_head, device)

    def use_cpu_decode_layout(self) -> None:
        """Store tall and square weight matrices (rows >= columns) column-major.

        For float32 on the CPU (in bfloat16 row-major is faster, measured the same way).
        At one token per step the CPU runs matrix-vector products, and for tall matrices
        (gate_up_proj, the tied head, MLA's wq) the BLAS reads a column-major weight about
        1.5x faster (measured on the 2-core CPU: 15 -> 23 GB/s; one 262M decode step
        79 -> 66 ms). Wide ones (down_proj) stay row-major, which is faster for them.
        Same values, same module API; `wkv_b` is left alone because the absorbed MLA path
        views it per head.
        """
        with torch.no_grad():
            for name, p in self.named_parameters():
                if wants_column_major(name, p.shape):
                    p.data = p.data.t().contiguous().t()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # the tied matrix is counted once

    # ------------------------------------------------------------------ reference path
    def forward(self, idx: Tensor) -> Tensor:
        """Plain full causal forward from position 0: [B, T] ids -> [B, T, V] logits."""
        t = idx.shape[1]
        if t > self.cfg.block_size:
            raise ValueError(f"sequence of {t} tokens exceeds block_size {self.cfg.block_size}")
        x = self.transformer.wte(idx)
        cs_swa, cs_mla = self.rope_swa[None, :t], self.rope_mla[None, :t]
        for blk in self.transformer.h:
            if isinstance(blk, SWABlock):
                x = blk(x, cs_swa, self.swa_window)
            else:
                x = blk(x, cs_mla)
        return self.lm_head(self.transformer.ln_f(x))

    # ------------------------------------------------------------------ cached path
    def setup_cache(
        self, batch: int, max_len: int, *, pad: int = 0, dtype: torch.dtype | None = None
    ) -> ModelCache:
        """Allocate every layer's cache once for a generation of at most `max_len` slots.

        `pad` is the most left padding any row has (the ring keeps that many extra slots
        so each row's attention sinks survive).
        """
        cfg = self.cfg
        dev = self.transformer.wte.weight.device
        dt = dtype or self.transformer.wte.weight.dtype
        swa_k: list[Tensor | None] = []
        swa_v: list[Tensor | None] = []
        mla: list[Tensor | None] = []
        ring_prefix = pad + cfg.swa_sink_size
        ring_size = min(max_len, ring_prefix + cfg.swa_window + 1)
        for kind in cfg.layer_kinds:
            if kind == "swa":
                s = ring_size if self.swa_window else max_len
                shape = (batch, cfg.n_kv_head, s, cfg.head_dim)
                swa_k.append(torch.zeros(shape, dtype=dt, device=dev))
                swa_v.append(torch.zeros(shape, dtype=dt, device=dev))
                mla.append(None)
            else:
                swa_k.append(None)
                swa_v.append(None)
                shape2 = (batch, max_len, cfg.kv_lora_rank + cfg.qk_rope_head_dim)
                mla.append(torch.zeros(shape2, dtype=dt, device=dev))
        return ModelCache(
            batch=batch,
            lin_size=max_len,
            lin_key_pos=torch.full((batch, max_len), -1, dtype=torch.long, device=dev),
            swa_k=swa_k,
            swa_v=swa_v,
            mla_kv=mla,
            window_mode=self.swa_window,
            ring_prefix=ring_prefix,
            ring_size=ring_size,
            ring_key_pos=(
                torch.full((batch, ring_size), -1, dtype=torch.long, device=dev)
                if self.swa_window
                else None
            ),
        )

    def step_context(
        self, pos: Tensor, cache: ModelCache, *, full_len: bool = False
    ) -> StepContext:
        """Assign slots to `pos` ([B, T], -1 = pad) and build the masks; advances the cache."""
        cfg = self.cfg
        dev = pos.device
        t = pos.shape[1]
        a0 = cache.written
        if a0 + t > cache.lin_size:
            raise ValueError(f"cache full: {a0} + {t} > {cache.lin_size} slots")
        lin_slots = torch.arange(a0, a0 + t, device=dev)
        cache.lin_key_pos[:, a0 : a0 + t] = pos
        lin_len = cache.lin_size if full_len else a0 + t
        lin_mask = visible(cache.lin_key_pos[:, :lin_len], pos, None, 0)
        ctx = StepContext(pos=pos, lin_slots=lin_slots, lin_mask=lin_mask, lin_len=lin_len)
        if cache.window_mode:
            assert cache.ring_key_pos is not None
            slots = [cache.ring_slot(a) for a in range(a0, a0 + t)]
            # only the last writer of a slot survives a long prefill
            last: dict[int, int] = {s: i for i, s in enumerate(slots)}
            keep = torch.tensor([last[s] == i for i, s in enumerate(slots)], device=dev)
            ctx.ring_slots = torch.tensor(slots, device=dev, dtype=torch.long)
            ctx.ring_keep = None if bool(keep.all()) else keep
            key_pos = torch.cat((cache.ring_key_pos, pos), dim=1)
            ctx.ring_mask = visible(key_pos, pos, cfg.swa_window, cfg.swa_sink_size)
            kept = ctx.ring_slots if ctx.ring_keep is None else ctx.ring_slots[ctx.ring_keep]
            kpos = pos if ctx.ring_keep is None else pos[:, ctx.ring_keep]
            cache.ring_key_pos.index_copy_(1, kept, kpos)
        cache.written = a0 + t
        return ctx

    def forward_cached(
        self, idx: Tensor, pos: Tensor, cache: ModelCache, ctx: StepContext
    ) -> Tensor:
        """Forward for new tokens given the cache: ids/pos [B, T] -> logits [B, T, V]."""
        x = self.transformer.wte(idx)
        p = pos.clamp(min=0)
        cs_swa, cs_mla = self.rope_swa[p], self.rope_mla[p]  # [B, T, d/2, 2]
        for i, blk in enumerate(self.transformer.h):
            if isinstance(blk, SWABlock):
                x = blk.forward_cached(x, cs_swa, i, cache, ctx)
            else:
                x = blk.forward_cached(x, cs_mla, i, cache, ctx)
        return self.lm_head(self.transformer.ln_f(x))
