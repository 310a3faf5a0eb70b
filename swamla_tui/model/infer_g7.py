"""The G7 part of dimension inference (formats G7 §2-§7, §11): fills a `ModelConfig` that
`infer.py` built from the G6 shapes.

Every size is read from a shape (value-embedding rows and gate width, FoPE's active pairs
and harmonics); only what no weight carries comes from the config: FoPE's theta and the
YaRN softmax factor. Each inconsistency is a one-line `CheckpointError`, never a
mis-shaped model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..base.errors import CheckpointError
from .config import FoPEConfig, ModelConfig


def _err(msg: str) -> CheckpointError:
    return CheckpointError(f"not an SWA-MLA state dict: {msg}")


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(s) for s in getattr(sd[key], "shape", ()))


def _float(args: Mapping[str, Any], key: str, default: float | None) -> float | None:
    v = args.get(key)
    if v is None:
        return default
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise CheckpointError(f"config '{key}' is not a number: {str(v)[:40]!r}") from None
    if not math.isfinite(out):
        raise CheckpointError(f"config '{key}' is {out}")
    return out


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() in ("1", "true", "yes"))


def yarn_factor(args: Mapping[str, Any]) -> float:
    """MLA's softmax factor (formats G7 §11): only when YaRN is on and the factor is not 1."""
    if not _truthy(args.get("yarn_enabled")):
        return 1.0
    f = _float(args, "yarn_attn_factor", None)
    if f is None:
        s = _float(args, "yarn_scale_factor", 1.0) or 1.0
        f = 0.1 * math.log(s) + 1.0 if s > 1.0 else 1.0
    if not 0.0 < f < 100.0:
        raise CheckpointError(f"config yarn_attn_factor {f} is out of range")
    return f


def _value_embeds(sd: Mapping[str, Any], cfg: ModelConfig) -> None:
    rows = [0] * cfg.n_layer
    gates: set[int] = set()
    for i, kind in enumerate(cfg.layer_kinds):
        p = f"transformer.h.{i}.attn."
        tab, gate = p + "value_embeds.weight", p + "ve_gate.weight"
        if tab not in sd and gate not in sd:
            continue
        if tab not in sd or gate not in sd:
            raise _err(f"layer {i} has only one of value_embeds / ve_gate")
        if kind == "swa":
            raise _err(f"layer {i}: value embeddings on an SWA layer")
        shp, g = _shape(sd, tab), _shape(sd, gate)
        r, w = shp if len(shp) == 2 else (0, 0)
        if len(g) != 2 or g[0] != 1 or not 1 <= g[1] <= cfg.n_embd:
            raise _err(f"layer {i}: ve_gate has shape {g}, expected [1, G] with G <= {cfg.n_embd}")
        if kind == "deltanet":
            assert cfg.deltanet is not None
            want = cfg.deltanet.proj_dim
        else:
            want = cfg.n_head * cfg.v_head_dim
        if w != want or r < 1:
            raise _err(f"layer {i}: value_embeds has shape {shp}, expected [*, {want}]")
        rows[i] = r  # fewer rows than the vocabulary: `value_notices` says so
        gates.add(g[1])
    if len(gates) > 1:
        raise _err(f"value-embedding gates of different widths {sorted(gates)}")
    if gates:
        cfg.ve_rows = rows
        cfg.ve_gate_dim = gates.pop()


def _fope(sd: Mapping[str, Any], cfg: ModelConfig, args: Mapping[str, Any]) -> None:
    found: set[tuple[int, ...]] = set()
    mla = [i for i, k in enumerate(cfg.layer_kinds) if k == "mla"]
    with_fope = [i for i in mla if f"transformer.h.{i}.attn.rope.sin_coef" in sd]
    if not with_fope:
        return
    if len(with_fope) != len(mla):
        raise _err("some MLA layers have FoPE coefficients, others not")
    for i in with_fope:
        p = f"transformer.h.{i}.attn.rope."
        if p + "cos_coef" not in sd:
            raise _err(f"layer {i}: FoPE sin_coef without cos_coef")
        s, c = _shape(sd, p + "sin_coef"), _shape(sd, p + "cos_coef")
        if len(s) != 2 or s != c:
            raise _err(f"layer {i}: FoPE coefficients of shapes {s} / {c}")
        found.add(s)
    if len(found) > 1:
        raise _err(f"FoPE coefficient shapes differ between layers: {sorted(found)}")
    na, nh = found.pop()
    half = cfg.qk_rope_head_dim // 2
    if not 1 <= na <= half or not 1 <= nh <= 64:
        raise _err(f"FoPE coefficients [{na}, {nh}] do not fit {half} rope pairs")
    theta = _float(args, "rope_theta", 10000.0) or 10000.0
    if theta <= 1.0:
        raise CheckpointError(f"config rope_theta {theta} must be > 1")
    cfg.fope = FoPEConfig(n_floor=half - na, n_active=na, n_harmonics=nh, theta=theta)


def _engram_gate(sd: Mapping[str, Any], cfg: ModelConfig) -> None:
    if cfg.engram is None:
        return
    keys = [f"transformer.h.{i}.engram.gating.gate_bias" for i in cfg.engram.layers]
    have = [k in sd for k in keys]
    if any(have) and not all(have):
        raise _err("some Engram layers have gating.gate_bias, others not")
    for k in keys:
        if k in sd and _shape(sd, k) != ():
            raise _err(f"'{k}' has shape {_shape(sd, k)}, expected a scalar")
    cfg.engram.gate_bias = all(have)


def value_notices(cfg: ModelConfig) -> list[str]:
    """Value-embedding tables shorter than the vocabulary (the trainer would index past
    them; here those ids get no value row)."""
    short = [(i, r) for i, r in enumerate(cfg.ve_rows) if 0 < r < cfg.vocab_size]
    if not short:
        return []
    where = ", ".join(f"layer {i}: {r}" for i, r in short)
    return [
        f"value-embedding tables shorter than the vocabulary ({cfg.vocab_size}; {where} rows): "
        "token ids past a table's end get no value embedding there"
    ]


def add_g7(sd: Mapping[str, Any], cfg: ModelConfig, args: Mapping[str, Any]) -> None:
    """Fill the G7 fields of `cfg` (in place) from the weights and, for theta/YaRN, args."""
    x0, res = "x0_lambdas" in sd, "resid_lambdas" in sd
    if x0 != res:
        raise _err("only one of x0_lambdas / resid_lambdas")
    if x0:
        for k in ("x0_lambdas", "resid_lambdas"):
            if _shape(sd, k) != (cfg.n_layer,):
                raise _err(f"'{k}' has shape {_shape(sd, k)}, expected [{cfg.n_layer}]")
        cfg.residual_scalars = True
    _value_embeds(sd, cfg)
    _fope(sd, cfg, args)
    _engram_gate(sd, cfg)
    cfg.attn_factor = yarn_factor(args)
