"""GatedDeltaNet local layers (formats v2 §5) and their block.

The layer computes FLA's `chunk_gated_delta_rule` on float32 inputs (not the trainer's CPU
fallback, which is another function, nor the bf16 rounding of the GPU kernel):

    S' = exp(g_t) S_{t-1};  δ_t = β_t (v_t - S'ᵀ k_t);  S_t = S' + k_t δ_tᵀ;  o_t = S_tᵀ (q_t / √d)

Three forms of it live here: `delta_rule_loop` (the recurrence as written: the reference
the tests compare with), `delta_rule_chunked` (the same function re-associated per chunk of
64 tokens with a triangular solve; full forwards and prefills) and `delta_rule_step` (one
token against a kept state: decoding, O(1) in the context length).
Quirks kept: no activation after the short convolutions, g and β come from the block input
(not the conv output), only k is normalised, no output gate or norm.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DeltaNetConfig
from .fuse import RowFusion
from .g7 import add_value_embeds, value_term
from .layers import RMSNorm, SwiGLU


def l2norm(k: Tensor) -> Tensor:
    """k / sqrt(max(sum k², 1e-12)) over the last axis (the trainer's HEAD form).

    sqrt(max(s, 1e-12)) = max(sqrt(s), 1e-6), which is what F.normalize computes.
    """
    return F.normalize(k, dim=-1, eps=1e-6)


def delta_rule_loop(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: float,
    state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The recurrence token by token. q, k, v: [B, T, H, d]; g, beta: [B, T, H].

    Returns o [B, T, H, d] and the final state [B, H, d, d] (key index first).
    """
    b, t, h, d = q.shape
    s = torch.zeros(b, h, d, v.shape[-1], dtype=q.dtype) if state is None else state.clone()
    out = []
    for i in range(t):
        s = s * g[:, i].exp()[..., None, None]
        pred = torch.einsum("bhkv,bhk->bhv", s, k[:, i])
        delta = beta[:, i, :, None] * (v[:, i] - pred)
        s = s + k[:, i, :, :, None] * delta[:, :, None, :]
        out.append(torch.einsum("bhkv,bhk->bhv", s, q[:, i] * scale))
    return torch.stack(out, dim=1), s


def delta_rule_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: float,
    state: Tensor | None = None,
    chunk: int = 64,
) -> tuple[Tensor, Tensor]:
    """`delta_rule_loop` re-associated per chunk (same shapes in and out).

    Within a chunk with cumulative log-decay G_t and start state S0 the deltas solve
    (I + A) Δ = diag(β) V - diag(β e^G) K S0, A[t, s] = β_t e^{G_t - G_s} k_t·k_s (s < t);
    the solve runs once for all chunks (U = (I+A)⁻¹ diag(β) V, W = (I+A)⁻¹ diag(β e^G) K),
    then Δ = U - W S0, O = diag(e^G) Q S0 + (Q Kᵀ ⊙ e^{G_t - G_s}) Δ, and the state moves on.
    Padding the last chunk with g = 0, β = 0 leaves the state untouched.
    """
    b, t, h, d = q.shape
    dv = v.shape[-1]
    c = max(1, min(chunk, t))
    n = -(-t // c)
    extra = n * c - t

    def chunks(x: Tensor) -> Tensor:  # [B, T, H, *] -> [B, H, N, C, *]
        if extra:
            x = F.pad(x, (0, 0) * (x.ndim - 2) + (0, extra))
        x = x.transpose(1, 2)
        return x.reshape(b, h, n, c, *x.shape[3:])

    qc, kc, vc = chunks(q * scale), chunks(k), chunks(v)
    gc, bc = chunks(g), chunks(beta)  # [B, H, N, C]
    cum = gc.cumsum(-1)
    idx = torch.arange(c, device=q.device)
    incl = idx[:, None] >= idx[None, :]  # [t, s]: s <= t
    decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(~incl, float("-inf")).exp()
    strict = idx[:, None] > idx[None, :]  # s < t
    a = (bc[..., :, None] * (kc @ kc.transpose(-1, -2)) * decay).masked_fill(~strict, 0.0)
    eye = torch.eye(c, dtype=q.dtype, device=q.device)
    rhs = torch.cat((vc * bc[..., None], kc * (bc * cum.exp())[..., None]), dim=-1)
    sol = torch.linalg.solve_triangular(a + eye, rhs, upper=False, unitriangular=True)
    u, w = sol.split((dv, d), dim=-1)  # [B, H, N, C, dv], [B, H, N, C, d]
    qk = (qc @ kc.transpose(-1, -2)) * decay  # [B, H, N, C, C], zero above the diagonal
    qg = qc * cum.exp()[..., None]
    s = torch.zeros(b, h, d, dv, dtype=q.dtype, device=q.device) if state is None else state
    outs = []
    for i in range(n):
        delta = u[:, :, i] - w[:, :, i] @ s  # [B, H, C, dv]
        outs.append(qg[:, :, i] @ s + qk[:, :, i] @ delta)
        last = cum[:, :, i, -1]  # [B, H]
        kd = kc[:, :, i] * (last[..., None] - cum[:, :, i]).exp()[..., None]  # [B, H, C, d]
        s = s * last.exp()[..., None, None] + kd.transpose(-1, -2) @ delta
    o = torch.stack(outs, dim=2).reshape(b, h, n * c, dv)[:, :, :t]
    return o.transpose(1, 2), s


def delta_rule_step(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: float, state: Tensor
) -> Tensor:
    """One token per row: q, k, v [B, H, d], g, beta [B, H]; `state` [B, H, d, d] in place."""
    b, h, d = k.shape
    state.mul_(g.exp()[..., None, None])
    flat = state.view(b * h, d, -1)
    pred = torch.bmm(k.reshape(b * h, 1, d), flat)  # [B*H, 1, dv]
    delta = (v.reshape(b * h, 1, -1) - pred) * beta.reshape(b * h, 1, 1)
    flat.baddbmm_(k.reshape(b * h, d, 1), delta)
    return torch.bmm(q.reshape(b * h, 1, d) * scale, flat).view(b, h, -1)


class ShortConv(nn.Module):
    """Key holder for `<q|k|v>_conv.conv.{weight,bias}`: a depthwise causal Conv1d."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, groups=dim, bias=True)


class DeltaNetAttention(nn.Module):
    # Projections set by name in __init__ (which exist depends on share_qk / latent_dim);
    # declared here so they are typed as Linear, not via nn.Module.__getattr__.
    q_down: nn.Linear
    q_up: nn.Linear
    k_up: nn.Linear
    qk_down: nn.Linear
    qk_up: nn.Linear
    v_up: nn.Linear
    value_embeds: nn.Embedding  # G7 even layers (`ve_rows` > 0)
    ve_gate: nn.Linear

    def __init__(self, c: int, cfg: DeltaNetConfig, ve_rows: int = 0, ve_gate_dim: int = 32):
        super().__init__()
        h, p, r = cfg.n_head, cfg.proj_dim, cfg.latent_dim
        self.h, self.d, self.p, self.k = h, cfg.head_dim, p, cfg.conv_kernel
        self.share, self.latent = cfg.share_qk, r > 0
        self.scale = cfg.head_dim**-0.5

        def lin(i: int, o: int) -> nn.Linear:
            return nn.Linear(i, o, bias=False)

        names = (["qk"] if self.share else ["q", "k"]) + ["v"]
        for nm in names:
            if r:
                setattr(self, f"{nm}_down", lin(c, r))
                setattr(self, f"{nm}_up", lin(r, p))
            else:
                setattr(self, f"{nm}_proj", lin(c, p))
        if r:
            self.o_down, self.o_up = lin(p, r), lin(r, c)
        else:
            self.o_proj = lin(p, c)
        self.g_proj, self.beta_proj = lin(c, h), lin(c, h)
        self.q_conv, self.k_conv, self.v_conv = (ShortConv(p, cfg.conv_kernel) for _ in range(3))
        first = [(getattr(self, f"{nm}_{'down' if r else 'proj'}"), "weight") for nm in names]
        self._in = RowFusion(first + [(self.g_proj, "weight"), (self.beta_proj, "weight")])
        convs = (self.q_conv.conv, self.k_conv.conv, self.v_conv.conv)
        self._cw = RowFusion([(m, "weight") for m in convs])  # [3P, 1, K]
        self._cb = RowFusion([(m, "bias") for m in convs])
        self.has_ve = ve_rows > 0
        if self.has_ve:  # formats G7 §4: added to v before the convolution
            add_value_embeds(self, ve_rows, p, ve_gate_dim)

    def prepare(self, column_major: bool = False) -> None:
        self._in.fuse(column_major)
        self._cw.fuse()
        self._cb.fuse()

    def _project(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pre-conv q|k|v [B, T, 3P] and the raw gate / beta logits [B, T, H]."""
        y = F.linear(u, self._in.get())
        h = self.h
        g, b = torch.split(y[..., -2 * h :], h, dim=-1)
        if not self.latent and not self.share:  # already q|k|v side by side
            return y[..., : 3 * self.p], g, b
        if self.latent:
            r = self.q_down.weight.shape[0] if not self.share else self.qk_down.weight.shape[0]
            parts = list(torch.split(y[..., : y.shape[-1] - 2 * h], r, dim=-1))
            ups = [self.qk_up] if self.share else [self.q_up, self.k_up]
            parts = [m(x) for m, x in zip([*ups, self.v_up], parts, strict=True)]
        else:
            parts = list(torch.split(y[..., : y.shape[-1] - 2 * h], self.p, dim=-1))
        if self.share:
            parts = [parts[0], parts[0], parts[1]]
        return torch.cat(parts, dim=-1), g, b

    def _out(self, o: Tensor) -> Tensor:
        return cast(Tensor, self.o_up(self.o_down(o)) if self.latent else self.o_proj(o))

    def _conv(self, z: Tensor, hist: Tensor | None) -> Tensor:
        """Causal depthwise conv of z [B, T, 3P]; `hist` [B, K-1, 3P] (updated) or zeros."""
        w, bias = self._cw.get(), self._cb.get()  # [3P, 1, K], [3P]
        k = self.k
        if hist is None:
            zc = F.pad(z, (0, 0, k - 1, 0))
        else:
            zc = torch.cat((hist, z), dim=1)  # [B, K-1+T, 3P]
            if k > 1:
                hist.copy_(zc[:, -(k - 1) :])
        if z.shape[1] == 1:  # decode: K multiply-adds per channel
            return (zc * w[:, 0].t()).sum(1, keepdim=True) + bias
        return F.conv1d(zc.transpose(1, 2), w, bias, groups=w.shape[0]).transpose(1, 2)

    def forward(
        self,
        u: Tensor,
        pad: Tensor | None = None,
        state: Tensor | None = None,
        conv: Tensor | None = None,
        ids: Tensor | None = None,
    ) -> Tensor:
        """u [B, T, C] -> [B, T, C]. With `state`/`conv` (a cache's), continue from them.

        `pad` [B, T] bool marks (leading) pad tokens: they enter neither the conv window
        (zeroed) nor the state (g = 0, β = 0 make their step the identity).
        `ids` [B, T]: the tokens, for the value embeddings of a G7 even layer.
        """
        bsz, t, _ = u.shape
        z, g, b = self._project(u)
        if self.has_ve:
            if ids is None:
                raise ValueError("a DeltaNet layer with value embeddings needs the token ids")
            ve = value_term(self.value_embeds, self.ve_gate, u, ids)
            z = torch.cat((z[..., : 2 * self.p], z[..., 2 * self.p :] + ve), dim=-1)
        if t == 1:
            pad = None  # one-token calls are decode steps: every row has a real token
        if pad is not None:
            z = z.masked_fill(pad[..., None], 0.0)
        y = self._conv(z, conv)
        g, b = F.logsigmoid(g.float()), torch.sigmoid(b.float())  # [B, T, H]
        if pad is not None:
            g, b = g.masked_fill(pad[..., None], 0.0), b.masked_fill(pad[..., None], 0.0)
        q, k, v = y.float().view(bsz, t, 3, self.h, self.d).unbind(2)  # [B, T, H, d] each
        k = l2norm(k)
        if state is not None and t == 1:
            o = delta_rule_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], b[:, 0], self.scale, state)
            o = o[:, None]
        else:
            o, s = delta_rule_chunked(q, k, v, g, b, self.scale, state)
            if state is not None:
                state.copy_(s)
        return self._out(o.reshape(bsz, t, self.p).to(u.dtype))


class WeDLMAdapter(nn.Module):
    """The WeDLM position wrapper around DeltaNet (`attn.deltanet.*` keys, formats v2 §8).

    u' = LayerNorm(u + σ(gate(u)) · position_embeddings[min(pos, rows - 1)]), then DeltaNet.
    """

    def __init__(self, c: int, cfg: DeltaNetConfig, ve_rows: int = 0, ve_gate_dim: int = 32):
        super().__init__()
        self.deltanet = DeltaNetAttention(c, cfg, ve_rows, ve_gate_dim)
        self.position_embeddings = nn.Embedding(cfg.wedlm_pos_rows, c)
        self.position_gate = nn.Sequential(nn.Linear(c, cfg.wedlm_gate_out))
        self.pos_norm = nn.LayerNorm(c, eps=1e-5)

    def prepare(self, column_major: bool = False) -> None:
        self.deltanet.prepare(column_major)

    def forward(self, u: Tensor, pos: Tensor, **kw: Tensor | None) -> Tensor:
        rows = self.position_embeddings.weight.shape[0]
        p = self.position_embeddings(pos.clamp(0, rows - 1))  # [B|1, T, C]
        u2 = self.pos_norm(u + torch.sigmoid(self.position_gate(u)) * p)
        return cast(Tensor, self.deltanet(u2, **kw))


class DeltaNetBlock(nn.Module):
    """x + attn(norm1(x)); x + mlp(norm2(x)). Always RMSNorm, even in DyT runs (formats v2 §3.4)."""

    def __init__(
        self,
        c: int,
        cfg: DeltaNetConfig,
        hidden: int,
        bias: bool,
        silu_first: bool,
        ve: tuple[int, int] = (0, 32),  # G7 value embeddings: (rows, gate dim); 0 rows = none
    ):
        super().__init__()
        self.norm1 = RMSNorm(c)
        self.attn: DeltaNetAttention | WeDLMAdapter = (
            WeDLMAdapter(c, cfg, *ve) if cfg.wedlm else DeltaNetAttention(c, cfg, *ve)
        )
        self.norm2 = RMSNorm(c)
        self.mlp = SwiGLU(c, hidden, bias, silu_first=silu_first)

    def forward(
        self,
        x: Tensor,
        pos: Tensor,
        pad: Tensor | None = None,
        state: Tensor | None = None,
        conv: Tensor | None = None,
        ids: Tensor | None = None,
    ) -> Tensor:
        u = self.norm1(x)
        if isinstance(self.attn, WeDLMAdapter):
            a = self.attn(u, pos, pad=pad, state=state, conv=conv, ids=ids)
        else:
            a = self.attn(u, pad=pad, state=state, conv=conv, ids=ids)
        x = x + a
        return cast(Tensor, x + self.mlp(self.norm2(x)))
