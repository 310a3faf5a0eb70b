"""Engram n-gram memory (formats v2 §7): token compression, hashing, tables, gating, conv.

G7 replaces the per-token scalar gate by a per-dimension one with a trained bias.
The token -> canonical id mapping these layers read is built in `token_map.py` (formats v2 §7.1): it
is not stored in checkpoints but rebuilt from the tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import EngramConfig
from .layers import RMSNorm


class EngramEmbeddings(nn.Module):
    hash_seeds: Tensor  # a buffer (register_buffer)

    def __init__(self, cfg: EngramConfig) -> None:
        super().__init__()
        heads = range(cfg.n_hash_heads)
        names = [f"n{n}_h{h}" for n in cfg.orders for h in heads]
        self.tables = nn.ModuleDict(
            {
                nm: nn.Embedding(size, cfg.slot)
                for nm, size in zip(names, cfg.table_sizes, strict=True)
            }
        )
        self.register_buffer(
            "hash_seeds", torch.zeros(cfg.n_seed_rows, cfg.n_hash_heads, dtype=torch.long)
        )


class EngramGating(nn.Module):
    def __init__(self, c: int, d_mem: int, bias: bool, gate_bias: bool = False) -> None:
        super().__init__()
        self.w_v = nn.Linear(d_mem, c, bias=bias)
        self.w_k = nn.Sequential(nn.Linear(d_mem, c, bias=bias))
        self.query_norm = RMSNorm(c)
        self.key_norm = RMSNorm(c)
        # G7: a 0-dimensional trained bias of the per-dimension gate (formats G7 §5)
        self.gate_bias = nn.Parameter(torch.zeros(())) if gate_bias else None


class EngramConv(nn.Module):
    def __init__(self, c: int, kernel: int) -> None:
        super().__init__()
        self.norm = RMSNorm(c)
        self.conv = nn.Conv1d(c, c, kernel, groups=c, bias=False)


class Engram(nn.Module):
    """`transformer.h.<i>.engram`: adds its output to the residual before the MLA block."""

    def __init__(self, c: int, cfg: EngramConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.c = c
        self.embeddings = EngramEmbeddings(cfg)
        self.gating = EngramGating(c, cfg.d_mem, cfg.bias, cfg.gate_bias)
        self.conv = EngramConv(c, cfg.conv_kernel)
        self.record: Callable[[Tensor], None] | None = None
        """None except while a `engine.routing` recorder is installed: then it sees each
        forward's gate values [B, T, 1] (v2) or [B, T, C] (G7)."""

    def hash_terms(self, n: int) -> int:
        """How many n-gram terms the hash XORs: the first three (v2 quirk), or all n in
        G7's code when every head of the order has the same table size (formats G7 §5)."""
        cfg = self.cfg
        k = cfg.n_hash_heads
        o = cfg.orders.index(n)
        same = len(set(cfg.table_sizes[o * k : (o + 1) * k])) == 1
        if cfg.gate_bias and same and cfg.n_seed_rows >= n:
            return n
        return min(n, 3)

    def memory(self, ext: Tensor, t: int) -> Tensor:
        """Concatenated table rows [B, T, d_mem] for the last t positions of `ext`.

        ext [B, hist + T]: canonical ids, the `hist = max_n - 1` before the new tokens first
        (0 before the start). Hash of the n-gram ending at t: XOR over its first three terms
        of c[t-n+1+i] * seeds[i, head] (int64), then mod the table's size.
        """
        hist = self.cfg.history
        seeds = self.embeddings.hash_seeds
        out = []
        for n in self.cfg.orders:
            h = None
            for i in range(self.hash_terms(n)):
                start = hist - n + 1 + i
                term = ext[:, start : start + t, None] * seeds[i]  # [B, T, K_h]
                h = term if h is None else torch.bitwise_xor(h, term)
            assert h is not None
            for kh in range(self.cfg.n_hash_heads):
                table = cast(nn.Embedding, self.embeddings.tables[f"n{n}_h{kh}"])
                out.append(table(torch.remainder(h[..., kh], table.weight.shape[0])))
        return torch.cat(out, dim=-1)

    def forward(
        self, x: Tensor, ext: Tensor, pad: Tensor | None = None, conv: Tensor | None = None
    ) -> Tensor:
        """The Engram output [B, T, C] for the residual x [B, T, C] (not yet added).

        `conv` [B, (Kc-1)δ, C]: a cache's last normalised gated vectors (updated in place);
        `pad` [B, T]: leading pads, kept out of that history.
        """
        t = x.shape[1]
        m = self.memory(ext, t).to(x.dtype)
        g = self.gating
        v = g.w_v(m)
        kk = g.w_k(m)
        if g.gate_bias is not None:  # G7: one gate per dimension, no sum, no C^-1/2
            score = g.query_norm(x) * g.key_norm(kk) + g.gate_bias.to(x.dtype)
        else:  # v2: one scalar per token
            score = (g.query_norm(x) * g.key_norm(kk)).sum(-1, keepdim=True) * self.c**-0.5
        gate = torch.sigmoid(score)
        if self.record is not None:
            self.record(gate)
        z = gate * v
        nz = self.conv.norm(z)
        if pad is not None:
            nz = nz.masked_fill(pad[..., None], 0.0)
        dil = self.cfg.dilation
        span = (self.cfg.conv_kernel - 1) * dil
        if conv is None:
            nc = F.pad(nz, (0, 0, span, 0))
        else:
            nc = torch.cat((conv, nz), dim=1)
            if span:
                conv.copy_(nc[:, -span:])
        w = self.conv.conv.weight  # [C, 1, Kc]
        y = F.conv1d(nc.transpose(1, 2), w, None, dilation=dil, groups=w.shape[0]).transpose(1, 2)
        return cast(Tensor, F.silu(y) + z)
