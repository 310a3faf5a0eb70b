"""Projections that read the same input, run as one product.

SWA's q/k/v projections read the same normalised input, and so do MLA's query and latent
projections (`wq` or `wq_a`, and `wkv_a`). At batch 1 a decode step is a chain of
matrix-vector products plus a few thousand small ops, each with its dispatch cost: one
product over the members' concatenated rows makes 20 calls fewer a step in the 262M model,
and under int8 quantizes each input once instead of three times.

Unlike `RowFusion` (float parameters only), `SharedInput` fuses whatever its members are
when `fuse` runs: plain float `nn.Linear`s (a `RowFusion` of their weights: row views of
one tensor, held once, `state_dict()` keeps its keys) or int8 modules of one kind
(`quant.concat_quant_linears`: the same int8 rows and scales, shared). The members stay
where they are: shapes, export and the reference code read them. If a member is replaced
after `fuse` (`.to()`, `load_state_dict(assign=True)`, `quantize` before the next
`fuse`), a call runs each member and concatenates: always right, only slower. Members of
another kind (bfloat16's `PackedLinear` copies on CPUs without bfloat16) are not fused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fuse import OneDNNLinear, RowFusion, onednn_linear, pays_in_onednn
from .quant import Int8DynamicLinear, Int8Linear, QuantLinear, concat_quant_linears


class SharedInput:
    """The members `parent.<name>` (looked up at each call) as one product: `self(x)` is
    `torch.cat([member(x) for member], -1)`."""

    def __init__(self, parent: nn.Module, names: Sequence[str]) -> None:
        self.parent = parent
        self.names = tuple(names)
        self._fused: list[nn.Module] = []  # the members `fuse` fused, to notice replacements
        self._weights: RowFusion | None = None  # float members: their weights as one tensor
        self._biases: RowFusion | None = None
        self._quant: QuantLinear | None = None
        self._onednn = False  # float32 members that run in oneDNN (`fuse.OneDNNLinear`)

    def members(self) -> list[nn.Module]:
        return [getattr(self.parent, n) for n in self.names]

    def fuse(self, column_major: bool = False) -> None:
        """Fuse the current members. `column_major`: store the fused float weight
        column-major when it is tall (the CPU decode layout's rule, `wants_column_major`)."""
        mods = self.members()
        self._fused = []
        self._weights = self._biases = self._quant = None
        if all(type(m) is nn.Linear for m in mods) or all(type(m) is OneDNNLinear for m in mods):
            self._onednn = type(mods[0]) is OneDNNLinear
            self._fuse_float([m for m in mods if isinstance(m, nn.Linear)], column_major)
        elif all(isinstance(m, Int8Linear | Int8DynamicLinear) for m in mods):
            qmods = [m for m in mods if isinstance(m, Int8Linear | Int8DynamicLinear)]
            quant = concat_quant_linears(qmods)
            if quant is not None:
                self._quant, self._fused = quant, mods

    def _fuse_float(self, mods: list[nn.Linear], column_major: bool) -> None:
        """The weights (and biases) as `RowFusion`s: the members' become row views."""
        ws = [m.weight for m in mods]
        has_bias = [m.bias is not None for m in mods]
        if len({(w.dtype, w.device, w.shape[1], w.ndim) for w in ws}) != 1 or ws[0].ndim != 2:
            return
        if len(set(has_bias)) != 1:
            return
        rows = sum(w.shape[0] for w in ws)
        self._weights = RowFusion([(m, "weight") for m in mods])
        self._weights.fuse(column_major and rows >= ws[0].shape[1])  # tall: column-major
        if has_bias[0]:
            self._biases = RowFusion([(m, "bias") for m in mods])
            self._biases.fuse()
        self._fused = list(mods)

    def __call__(self, x: Tensor) -> Tensor:
        mods = self.members()
        if len(mods) == len(self._fused) and all(
            a is b for a, b in zip(mods, self._fused, strict=True)
        ):
            if self._quant is not None:
                return cast(Tensor, self._quant(x))
            if self._weights is not None:  # a weight replaced in place: concatenated anew
                w = self._weights.get()
                b = None if self._biases is None else self._biases.get()
                if self._onednn and pays_in_onednn(x, w):
                    return onednn_linear(x, w, b)
                return F.linear(x, w, b)
        return torch.cat([m(x) for m in mods], dim=-1)

    @property
    def fused(self) -> bool:
        """Whether the last `fuse` fused (for tests and the benchmark's floor)."""
        return bool(self._fused)

    def product(self) -> nn.Module | Tensor | None:
        """The fused int8 module or float weight (the benchmark times it), or None."""
        if self._quant is not None:
            return self._quant
        return None if self._weights is None else self._weights.tensor


def shared_inputs(model: nn.Module) -> list[SharedInput]:
    """Every `SharedInput` held by a module of `model`."""
    return [v for m in model.modules() for v in vars(m).values() if isinstance(v, SharedInput)]
