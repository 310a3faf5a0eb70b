"""Recording the MoE routing and Engram gates while the model runs (`base.experts` reads it).

The model's `MoE.record` / `Engram.record` hooks are None unless a recorder here is
installed, so a model that records nothing pays one attribute check per layer call. Two
recorders:

- `StepRoutes` (decoding): keeps, per forward, the last position of each row (the one
  whose logits choose the next token; prompts are left-padded, so it is position -1) as
  device tensors; `take` moves one step's figures to the host in one transfer, after the
  loop's own per-step sync of the ids.
- `RouteTally` (a scored text): counts chosen experts, router entropy and gates over the
  positions `mask` marks, on the device (bincount), read once at the end.

Installing writes the hooks on the shared model: one recorder at a time per model (the
chat and batch runs generate one at a time).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..base.experts import GateTally, LayerRoute, LayerTally, TokenRouting
from ..model.mla import MLABlock
from ..model.moe import MoE
from ..model.transformer import SWAMLA

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["RouteTally", "StepRoutes", "router_entropy", "routed_layers"]


def router_entropy(logits: Tensor) -> Tensor:
    """[..., E] router logits -> [...] entropy (nats) of the normalised sigmoid affinities."""
    a = torch.sigmoid(logits.float())
    p = a / a.sum(-1, keepdim=True)
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)


def routed_layers(model: SWAMLA) -> tuple[list[tuple[int, MoE]], list[tuple[int, Any]]]:
    """(layer, MoE) and (layer, Engram) of `model`, in layer order."""
    moe: list[tuple[int, MoE]] = []
    engram: list[tuple[int, Any]] = []
    for i, blk in enumerate(model.transformer.h):
        if isinstance(blk, MLABlock):
            if isinstance(blk.ffn, MoE):
                moe.append((i, blk.ffn))
            if blk.has_engram:
                engram.append((i, blk.engram))
    return moe, engram


class _Hooks:
    """Installs `_on_moe` / `_on_gate` on the model's layers; `with` removes them."""

    def __init__(self, model: SWAMLA) -> None:
        self.moe, self.engram = routed_layers(model)

    @property
    def active(self) -> bool:
        """False for a model with neither MoE nor Engram layers: nothing to record."""
        return bool(self.moe or self.engram)

    def install(self) -> None:
        for i, m in self.moe:
            m.record = partial(self._on_moe, i)
        for i, g in self.engram:
            g.record = partial(self._on_gate, i)

    def remove(self) -> None:
        for _, m in self.moe:
            m.record = None
        for _, g in self.engram:
            g.record = None

    def __enter__(self) -> Self:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _on_moe(self, layer: int, logits: Tensor, sel: Tensor, w: Tensor) -> None:
        raise NotImplementedError

    def _on_gate(self, layer: int, gate: Tensor) -> None:
        raise NotImplementedError


class StepRoutes(_Hooks):
    """Per-step routing of each row's last position; `take` after each forward."""

    def __init__(self, model: SWAMLA) -> None:
        super().__init__(model)
        self.k = self.moe[0][1].cfg.top_k if self.moe else 0
        self.n_experts = self.moe[0][1].cfg.n_experts if self.moe else 0
        self._moe: dict[int, Tensor] = {}  # layer -> [B, 2k + 1]: experts, weights, entropy
        self._gate: dict[int, Tensor] = {}  # layer -> [B, 1]

    def _on_moe(self, layer: int, logits: Tensor, sel: Tensor, w: Tensor) -> None:
        if sel.dim() < 3:
            return  # not a [B, T] forward
        last = (sel[:, -1].float(), w[:, -1].float(), router_entropy(logits[:, -1])[:, None])
        self._moe[layer] = torch.cat(last, dim=-1)

    def _on_gate(self, layer: int, gate: Tensor) -> None:
        self._gate[layer] = gate[:, -1].float().mean(-1, keepdim=True)

    def take(self) -> list[TokenRouting]:
        """The last forward's routing, one `TokenRouting` per row (one host transfer)."""
        moe_layers, gate_layers = sorted(self._moe), sorted(self._gate)
        parts = [self._moe[i] for i in moe_layers] + [self._gate[i] for i in gate_layers]
        self._moe, self._gate = {}, {}
        if not parts:
            return []
        host = torch.cat(parts, dim=-1).tolist()
        k, width = self.k, 2 * self.k + 1
        out = []
        for row in host:
            routes = []
            for j, layer in enumerate(moe_layers):
                cell = row[j * width : (j + 1) * width]
                pairs = sorted(zip(cell[:k], cell[k : 2 * k], strict=True), key=lambda p: -p[1])
                routes.append(
                    LayerRoute(
                        layer,
                        tuple(int(e) for e, _ in pairs),
                        tuple(float(x) for _, x in pairs),
                        max(0.0, float(cell[2 * k])),
                        self.n_experts,
                    )
                )
            base = len(moe_layers) * width
            gates = tuple((layer, float(row[base + j])) for j, layer in enumerate(gate_layers))
            out.append(TokenRouting(tuple(routes), gates))
        return out


class RouteTally(_Hooks):
    """Counts over many positions: set `mask` ([B, T] bool, None: all) before each forward."""

    def __init__(self, model: SWAMLA) -> None:
        super().__init__(model)
        self.mask: Tensor | None = None
        dev = model.lm_head.weight.device
        self._counts = {
            i: torch.zeros(m.cfg.n_experts, dtype=torch.long, device=dev) for i, m in self.moe
        }
        self._ent = {i: torch.zeros((), dtype=torch.float64, device=dev) for i, _ in self.moe}
        self._tok = {i: torch.zeros((), dtype=torch.long, device=dev) for i, _ in self.moe}
        self._gate = {i: torch.zeros((), dtype=torch.float64, device=dev) for i, _ in self.engram}
        self._gtok = {i: torch.zeros((), dtype=torch.long, device=dev) for i, _ in self.engram}
        self._k = {i: m.cfg.top_k for i, m in self.moe}

    def _pick(self, t: Tensor) -> Tensor:
        """The rows of `t` [B, T, ...] at the masked positions -> [n, ...]."""
        if self.mask is None:
            return t.reshape(-1, *t.shape[2:])
        return t[self.mask.to(t.device)]

    def _on_moe(self, layer: int, logits: Tensor, sel: Tensor, w: Tensor) -> None:
        s = self._pick(sel)
        c = self._counts[layer]
        c += torch.bincount(s.reshape(-1), minlength=c.shape[0])
        self._ent[layer] += router_entropy(self._pick(logits)).double().sum()
        self._tok[layer] += s.shape[0]

    def _on_gate(self, layer: int, gate: Tensor) -> None:
        g = self._pick(gate.float().mean(-1))
        self._gate[layer] += g.double().sum()
        self._gtok[layer] += g.shape[0]

    def tallies(self) -> tuple[list[LayerTally], list[GateTally]]:
        moe = [
            LayerTally(
                i,
                [int(x) for x in self._counts[i].tolist()],
                self._k[i],
                int(self._tok[i]),
                float(self._ent[i]),
            )
            for i, _ in self.moe
        ]
        gates = [GateTally(i, int(self._gtok[i]), float(self._gate[i])) for i, _ in self.engram]
        return moe, gates
