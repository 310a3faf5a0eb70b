"""model/layers.py: the rotation `apply_rope` computes, whatever layout its input has."""

from __future__ import annotations

import pytest
import torch

from swamla_tui.model.layers import apply_rope, rope_tables


def _formula(x: torch.Tensor, cs: torch.Tensor) -> torch.Tensor:
    xf = torch.unflatten(x.float(), -1, (-1, 2))
    x0, x1, c, s = xf[..., 0], xf[..., 1], cs[..., 0], cs[..., 1]
    return torch.stack((x0 * c - x1 * s, x1 * c + x0 * s), dim=-1).flatten(-2).to(x.dtype)


def _inputs(layout: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if layout == "contiguous":
        return torch.randn(2, 7, 3, 16, generator=g)
    if layout == "split view":  # MLA's q_pe / k_pe: a slice of a wider projection
        return torch.split(torch.randn(2, 7, 3, 40, generator=g), [24, 16], dim=-1)[1]
    return torch.randn(2, 7, 3, 17, generator=g)[..., 1:]  # odd strides: no complex view


@pytest.mark.parametrize("layout", ["contiguous", "split view", "odd strides"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("table", ["rope", "fope"])
def test_apply_rope_is_the_pairwise_rotation(layout: str, dtype: torch.dtype, table: str) -> None:
    x = _inputs(layout).to(dtype)
    if table == "rope":
        cs = rope_tables(16, 7)[None, :, None]
    else:  # FoPE's tables are not unit rotations
        cs = torch.randn(1, 7, 1, 8, 2, generator=torch.Generator().manual_seed(1))
    got = apply_rope(x, cs)
    assert got.dtype == dtype and got.shape == x.shape
    assert (got.float() - _formula(x, cs).float()).abs().max() <= 1e-6
