"""Parameters that share one concatenated tensor, so one matrix product serves several.

At batch 1 a decode step is a chain of matrix-vector products; several small ones on the
same input (DeltaNet's q/k/v/g/beta projections, MoE's router + shared expert + latent down
projection) cost more than one product over their concatenation. `RowFusion.fuse` copies
the parameters into one tensor and makes each parameter a view of its rows, so the weights
are held once and `state_dict()` keeps its keys. If the parameters are later replaced
(`.to()`, `load_state_dict(assign=True)`), `get` notices and concatenates on the fly: the
result is always right, only slower until `fuse` runs again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class RowFusion:
    """The row-wise concatenation of `module.name` parameters (looked up at each use)."""

    def __init__(self, refs: Sequence[tuple[nn.Module, str]]) -> None:
        self.refs = list(refs)
        self.tensor: Tensor | None = None
        self._ptrs: list[int] = []

    def _params(self) -> list[Tensor]:
        return [getattr(m, n) for m, n in self.refs]

    def fuse(self, column_major: bool = False) -> None:
        params = self._params()
        with torch.no_grad():
            w = torch.cat([p.detach() for p in params], 0)
            if column_major and w.ndim == 2:
                w = w.t().contiguous().t()
            off = 0
            for p in params:
                n = p.shape[0]
                p.data = w[off : off + n]
                off += n
        self.tensor = w
        self._ptrs = [p.data_ptr() for p in params]

    def get(self) -> Tensor:
        params = self._params()
        w = self.tensor
        if w is not None and [p.data_ptr() for p in params] == self._ptrs:
            return w
        return torch.cat(params, 0)
