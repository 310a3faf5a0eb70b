"""The SWA-MLA transformer: tied embeddings, a stack of SWA / MLA / DeltaNet blocks, final norm.

One class serves every generation (v1, v2 G1-G6 and G7): the config says which block each
layer is and which semantic switches apply. G7's residual scalars mix the token embedding
x0 back in before every block; its value embeddings need the token ids and FoPE the
positions, so both paths hand ids and positions to every block. Two paths share the weights:
- `forward(ids)`: the plain full forward from position 0 (the reference);
- `setup_cache` + `step_context` + `forward_cached`: incremental decoding for the engine;
  `forward_packed`: several such calls in one pass over the weights.
One piece at ~420 lines: the three forwards walk the same block stack with the same
per-layer dispatch (kinds, residual scalars, RoPE/FoPE tables, Engram history), and the
cache they share is allocated here, so a change to one is checked against the others in
one place.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from .cache import ModelCache, Packed, Span, StepContext, visible
from .config import ModelConfig
from .deltanet import DeltaNetBlock
from .fuse import (
    PackedLinear,
    cpu_has_native_bf16,
    fp16_packing_available,
    pack_bf16_linears,
    use_onednn_linears,
)
from .layers import make_norm, rope_tables
from .mla import MLABlock
from .moe import MoE
from .quant import Quantize, QuantLinear, make_quant_linear, quant_linear_numel, quantize_linears
from .shared_input import shared_inputs
from .swa import SWABlock


def wants_column_major(name: str, shape: torch.Size | tuple[int, ...]) -> bool:
    """The CPU decode layout's rule (see `SWAMLA.use_cpu_decode_layout`)."""
    lookup = ".tables." in name or "value_embeds" in name  # embedding rows, read by id
    return len(shape) == 2 and shape[0] >= shape[1] and "wkv_b" not in name and not lookup


class Trunk(nn.Module):
    """The `transformer.*` part: a plain module (not a ModuleDict) so the attributes are
    typed; same registration order and names, so the state-dict keys stay
    `transformer.wte.weight`, `transformer.h.<i>...`, `transformer.ln_f...`."""

    def __init__(self, wte: nn.Embedding, h: nn.ModuleList, ln_f: nn.Module) -> None:
        super().__init__()
        self.wte = wte
        self.h = h
        self.ln_f = ln_f


class SWAMLA(nn.Module):
    rope_swa: Tensor  # buffers (register_buffer): typed as tensors, not modules
    rope_mla: Tensor

    def __init__(self, cfg: ModelConfig, *, swa_window: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        # False: full causal SWA layers, as trained (formats v1 §4); flash SWA always windows itself
        self.swa_window = swa_window and not cfg.swa_flash
        blocks: list[nn.Module] = []
        for i, kind in enumerate(cfg.layer_kinds):
            if kind == "swa":
                blocks.append(SWABlock(cfg, i))
            elif kind == "mla":
                blocks.append(MLABlock(cfg, i))
            else:
                assert cfg.deltanet is not None
                hidden = cfg.mlp_hidden or 4 * cfg.n_embd
                ve = (cfg.ve_layer(i), cfg.ve_gate_dim)
                blocks.append(
                    DeltaNetBlock(cfg.n_embd, cfg.deltanet, hidden, cfg.bias, cfg.silu_first, ve)
                )
        self.transformer = Trunk(
            nn.Embedding(cfg.vocab_size, cfg.n_embd),
            nn.ModuleList(blocks),
            make_norm(cfg.norm, cfg.n_embd),
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied
        # G7 residual scalars (top-level keys): x = resid[i]·x + x0[i]·x0 before block i
        self.x0_lambdas: nn.Parameter | None = None
        self.resid_lambdas: nn.Parameter | None = None
        if cfg.residual_scalars:
            self.x0_lambdas = nn.Parameter(torch.zeros(cfg.n_layer))
            self.resid_lambdas = nn.Parameter(torch.ones(cfg.n_layer))
        n_pos = cfg.block_size
        self.register_buffer("rope_swa", rope_tables(cfg.head_dim, n_pos), persistent=False)
        self.register_buffer(
            "rope_mla", rope_tables(max(cfg.qk_rope_head_dim, 2), n_pos), persistent=False
        )
        # Engram's token -> canonical id map: from the tokenizer, never stored (formats v2 §7.1)
        self.engram_map: Tensor | None = None
        # `quantize`: the head's int8 copy (the tied embedding stays float for lookups)
        self.head_q: QuantLinear | None = None
        self.quantized: Quantize | None = None

    @property
    def has_recurrent_state(self) -> bool:
        """DeltaNet or Engram layers: decode state that is updated in place each step."""
        return self.cfg.n_deltanet > 0 or self.cfg.engram is not None

    def set_token_mapping(self, mapping: Tensor) -> None:
        """The [vocab] int64 token -> canonical id map Engram layers need."""
        dev = self.transformer.wte.weight.device
        self.engram_map = mapping.to(device=dev, dtype=torch.long)

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
                if blk.attn.rope is not None:
                    blk.attn.rope.init_buffers(device)
        if self.engram_map is not None:
            self.engram_map = self.engram_map.to(device)

    def prepare(self, column_major: bool = False) -> None:
        """Fuse the products that share an input (SWA's q/k/v, MLA's query and latent,
        DeltaNet, MoE) for decoding; call after the weights are final (after loading,
        `.to()` or `use_cpu_decode_layout`)."""
        for blk in self.transformer.h:
            cast(SWABlock | MLABlock | DeltaNetBlock, blk).attn.prepare(column_major)
            if isinstance(blk, MLABlock) and isinstance(blk.ffn, MoE):
                blk.ffn.prepare(column_major)

    def use_cpu_decode_layout(self) -> None:
        """Store tall and square weight matrices (rows >= columns) column-major.

        For float32 on the CPU (in bfloat16 row-major is faster, measured the same way).
        At one token per step the CPU runs matrix-vector products, and for tall matrices
        (gate_up_proj, the tied head, MLA's wq) the BLAS reads a column-major weight about
        1.5x faster (measured on the 2-core CPU: 15 -> 23 GB/s; one 262M decode step
        79 -> 66 ms). Wide ones (down_proj) stay row-major, which is faster for them.
        Same values, same module API; `wkv_b` is left alone because the absorbed MLA path
        views it per head. Call `prepare(column_major=True)` afterwards.
        """
        with torch.no_grad():
            for name, p in self.named_parameters():
                if wants_column_major(name, p.shape):
                    p.data = p.data.t().contiguous().t()

    def use_cpu_onednn_products(self) -> int:
        """float32 on a CPU where oneDNN's few-row products beat the BLAS's
        (`fuse.onednn_float32_products`): the projections and the head run in oneDNN on
        row-major weights, instead of `use_cpu_decode_layout`. Call before `prepare`.
        Returns how many products now run there."""
        return use_onednn_linears(self)

    def quantize(self, kind: Quantize) -> int:
        """Int8 weights for the big projections and an int8 copy of the tied head (quant.py).

        CPU only; call after the weights are final and after `prepare`. Returns how many
        matrices are now int8.
        """
        n = quantize_linears(self.transformer.h, kind, skip=("wkv_b", "ve_gate"))
        for si in shared_inputs(self.transformer.h):
            si.fuse()  # the int8 members again as one product each
        self.head_q = make_quant_linear(kind, self.transformer.wte.weight, None)
        if isinstance(self.lm_head, PackedLinear):
            self.lm_head._fp16 = None  # the int8 copy replaces the float16 one
        self.quantized = kind
        return n + 1

    def _head(self, x: Tensor) -> Tensor:
        if self.head_q is not None:
            return cast(Tensor, self.head_q(x))
        return cast(Tensor, self.lm_head(x))

    def use_cpu_bf16_packing(self) -> int:
        """bfloat16 on a CPU without bfloat16 instructions: give the projections and the
        head FBGEMM float16 copies (`fuse.PackedLinear`: about 1.5x faster products there,
        the weights held twice) and run MLA's cached attention in float32. Returns how
        many products were packed; 0 where the CPU has native bfloat16.
        """
        if cpu_has_native_bf16() or not fp16_packing_available():
            return 0
        for blk in self.transformer.h:
            if isinstance(blk, MLABlock):
                blk.attn.absorb_in_float32()
        return pack_bf16_linears(self, skip=("wkv_b",))

    def num_params(self) -> int:
        # the tied matrix is counted once; int8 weights are buffers (the head's copy aside)
        n = sum(p.numel() for p in self.parameters())
        return n + quant_linear_numel(self.transformer.h)

    def active_params(self) -> int:
        """Parameters one token uses: routed experts count top-k of E (formats v2 §6), and a
        value-embedding table one row (formats G7 §4: a lookup, not a product)."""
        n = self.num_params()
        for name, p in self.named_parameters():
            if name.endswith("value_embeds.weight"):
                n -= p.numel() - p.shape[-1]
        for blk in self.transformer.h:
            if isinstance(blk, MLABlock) and isinstance(blk.ffn, MoE):
                m, ex = blk.ffn.cfg, blk.ffn.experts
                per = (ex.gate_up_weight.numel() + ex.down_weight.numel()) // m.n_experts
                n -= per * (m.n_experts - m.top_k)
        return n

    def _canonical(self, idx: Tensor, pad: Tensor | None) -> Tensor:
        if self.engram_map is None:
            raise RuntimeError("Engram layers need the token mapping (set_token_mapping)")
        c = self.engram_map[idx]
        return c if pad is None else c.masked_fill(pad, 0)

    # ------------------------------------------------------------------ reference path
    def forward(self, idx: Tensor) -> Tensor:
        """Plain full causal forward from position 0: [B, T] ids -> [B, T, V] logits."""
        b, t = idx.shape
        if t > self.cfg.block_size:
            raise ValueError(f"sequence of {t} tokens exceeds block_size {self.cfg.block_size}")
        x = x0 = self.transformer.wte(idx)
        cs_swa, cs_mla = self.rope_swa[None, :t], self.rope_mla[None, :t]
        pos = torch.arange(t, device=idx.device)[None]
        ext = None
        if self.cfg.engram is not None:  # history of max_n - 1 zeros before position 0
            hist = idx.new_zeros(b, self.cfg.engram.history)
            ext = torch.cat((hist, self._canonical(idx, None)), dim=1)
        for i, blk in enumerate(self.transformer.h):
            x = self._mix_x0(i, x, x0)
            if isinstance(blk, DeltaNetBlock):
                x = blk(x, pos, ids=idx)
            elif isinstance(blk, SWABlock):
                x = blk(x, cs_swa, self.swa_window)
            else:
                mb = cast(MLABlock, blk)  # the third kind
                if mb.has_engram:
                    assert ext is not None
                    x = x + mb.engram(x, ext)
                x = mb(x, mb.rope_for(cs_mla, pos), idx)
        return self._head(self.transformer.ln_f(x))

    def _mix_x0(self, i: int, x: Tensor, x0: Tensor) -> Tensor:
        """G7 residual scalars before block i (formats G7 §3); x unchanged without them."""
        if self.resid_lambdas is None or self.x0_lambdas is None:
            return x
        r, z = self.resid_lambdas[i].to(x.dtype), self.x0_lambdas[i].to(x.dtype)
        return r * x + z * x0

    # ------------------------------------------------------------------ cached path
    def setup_cache(
        self, batch: int, max_len: int, *, pad: int = 0, dtype: torch.dtype | None = None
    ) -> ModelCache:
        """Allocate every layer's cache once for a generation of at most `max_len` slots.

        `pad` is the most left padding any row has (the ring keeps that many extra slots
        so each row's attention sinks survive). On the CPU a 16-bit model's SWA keys and
        values are held in float32 (exact copies, twice the memory): PyTorch's bfloat16
        attention kernel runs a decode step's one query row 2-3x slower than float32's
        (16 rows over 46 keys: 1.3 ms vs 0.4 per layer on the 2-core EPYC; a batch-16
        decode step at 500 tokens 179 -> 128 ms, both caches in one process).
        """
        cfg = self.cfg
        dev = self.transformer.wte.weight.device
        dt = dtype or self.transformer.wte.weight.dtype
        swa_dt = torch.float32 if dev.type == "cpu" and dt.itemsize == 2 else dt
        n = cfg.n_layer
        swa_k: list[Tensor | None] = [None] * n
        swa_v: list[Tensor | None] = [None] * n
        mla: list[Tensor | None] = [None] * n
        dn_state: list[Tensor | None] = [None] * n
        dn_conv: list[Tensor | None] = [None] * n
        eng_conv: list[Tensor | None] = [None] * n
        mla_ve: list[Tensor | None] = [None] * n
        ring_prefix = pad + cfg.swa_sink_size
        ring_size = min(max_len, ring_prefix + cfg.swa_window + 1)

        def zeros(*s: int, d: torch.dtype = dt) -> Tensor:
            return torch.zeros(s, dtype=d, device=dev)

        for i, kind in enumerate(cfg.layer_kinds):
            if kind == "swa":
                s = ring_size if self.swa_window else max_len
                swa_k[i] = zeros(batch, cfg.n_kv_head, s, cfg.head_dim, d=swa_dt)
                swa_v[i] = zeros(batch, cfg.n_kv_head, s, cfg.head_dim, d=swa_dt)
            elif kind == "mla":
                mla[i] = zeros(batch, max_len, cfg.kv_rank(i) + cfg.qk_rope_head_dim)
                if cfg.ve_layer(i):
                    mla_ve[i] = zeros(batch, max_len, cfg.n_head * cfg.v_head_dim)
                if cfg.engram is not None and i in cfg.engram.layers:
                    span = (cfg.engram.conv_kernel - 1) * cfg.engram.dilation
                    eng_conv[i] = zeros(batch, span, cfg.n_embd)
            else:
                dc = cfg.deltanet
                assert dc is not None
                dn_state[i] = zeros(batch, dc.n_head, dc.head_dim, dc.head_dim, d=torch.float32)
                dn_conv[i] = zeros(batch, dc.conv_kernel - 1, 3 * dc.proj_dim)
        eng_ids = None
        if cfg.engram is not None:
            eng_ids = zeros(batch, cfg.engram.history, d=torch.long)
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
            dn_state=dn_state,
            dn_conv=dn_conv,
            engram_ids=eng_ids,
            engram_conv=eng_conv,
            mla_ve=mla_ve,
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
        if a0 == 0 and t > 1:  # a prefill only: one comparison, never in a decode step
            ctx.causal = bool((pos == torch.arange(t, device=dev)).all())
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
        self,
        idx: Tensor,
        pos: Tensor,
        cache: ModelCache,
        ctx: StepContext,
        *,
        last_only: bool = False,
    ) -> Tensor:
        """Forward for new tokens given the cache: ids/pos [B, T] -> logits [B, T, V].

        `last_only`: logits of the last position only ([B, 1, V]): a prefill needs no
        more, and the head over every prompt token was the largest product of a batched
        prefill (16 x 48 tokens x 50257 x 1024 in the 262M benchmark).

        Pads (pos -1) are leading: they stay out of DeltaNet states, conv windows and
        Engram histories, so each row starts from its own first token.
        """
        x = x0 = self.transformer.wte(idx)
        p = pos.clamp(min=0)
        cs_swa, cs_mla = self.rope_swa[p], self.rope_mla[p]  # [B, T, d/2, 2]
        pad = pos < 0 if self.has_recurrent_state else None
        ext = None
        if self.cfg.engram is not None and cache.engram_ids is not None:
            ext = torch.cat((cache.engram_ids, self._canonical(idx, pad)), dim=1)
            hist = cache.engram_ids.shape[1]
            if hist:
                cache.engram_ids.copy_(ext[:, -hist:])
        for i, blk in enumerate(self.transformer.h):
            x = self._mix_x0(i, x, x0)
            if isinstance(blk, DeltaNetBlock):
                st, cv = cache.dn_state[i], cache.dn_conv[i]
                x = blk(x, p, pad=pad, state=st, conv=cv, ids=idx)
            elif isinstance(blk, SWABlock):
                x = blk.forward_cached(x, cs_swa, i, cache, ctx)
            else:
                mb = cast(MLABlock, blk)  # the third kind
                if mb.has_engram:
                    assert ext is not None
                    x = x + mb.engram(x, ext, pad, cache.engram_conv[i])
                # FoPE at each token's absolute position in the window (formats G7 §6)
                x = mb.forward_cached(x, mb.rope_for(cs_mla, p), i, cache, ctx, idx)
        if last_only:
            x = x[:, -1:]  # [B, 1, C]
        return self._head(self.transformer.ln_f(x))

    @property
    def packable(self) -> bool:
        """Whether `forward_packed` runs: no per-row recurrent state (DeltaNet, Engram)
        and linear SWA caches."""
        return not self.has_recurrent_state and not self.swa_window

    def forward_packed(self, calls: list[Packed]) -> list[Tensor]:
        """Several `forward_cached` calls as one forward: the tokens of every call pass
        through each projection together (the weights are read once, not once per call),
        and attend per call over their own cache and context. Logits per call, as
        `forward_cached` returns them; every call's `ctx` is built beforehand.

        What continuous batching needs to let a new prompt's prefill ride along with a
        decode step of the other rows instead of stopping them (`packable` models).
        """
        if not self.packable:
            raise ValueError("forward_packed needs a model without DeltaNet or Engram layers")
        idx = torch.cat([c.idx.reshape(-1) for c in calls])[None]  # [1, N]
        p = torch.cat([c.pos.reshape(-1) for c in calls])[None].clamp(min=0)
        spans: list[Span] = [(*c.idx.shape, c.cache, c.ctx) for c in calls]
        x = x0 = self.transformer.wte(idx)
        cs_swa, cs_mla = self.rope_swa[p], self.rope_mla[p]  # [1, N, d/2, 2]
        for i, blk in enumerate(self.transformer.h):
            x = self._mix_x0(i, x, x0)
            if isinstance(blk, SWABlock):
                x = blk.forward_packed(x, cs_swa, i, spans)
            else:
                mb = cast(MLABlock, blk)
                x = mb.forward_packed(x, mb.rope_for(cs_mla, p), i, spans, idx)
        rows, off = [], 0
        for c in calls:
            b, t = c.idx.shape
            part = x[0, off : off + b * t].view(b, t, -1)
            rows.append(part[:, -1:] if c.last_only else part)
            off += b * t
        sizes = [r.shape[0] * r.shape[1] for r in rows]
        flat = torch.cat([r.reshape(n, -1) for r, n in zip(rows, sizes, strict=True)])
        logits = self._head(self.transformer.ln_f(flat[None]))[0]
        outs, off = [], 0
        for r, n in zip(rows, sizes, strict=True):
            outs.append(logits[off : off + n].view(r.shape[0], r.shape[1], -1))
            off += n
        return outs
