"""An export folder's `config.json` is untrusted: read it bounded, check it fully, then build.

A crafted config would otherwise reach the model's constructor as it is: a string or a
negative dimension escapes as a raw TypeError or RuntimeError, NaN slips through
comparisons, `block_size` 2e8 asks for gigabytes of RoPE tables and `n_layer` 1,000,000
builds modules for minutes. So, before anything is built:

- the file is read only if it is a regular file of at most `MAX_CONFIG_BYTES`, and its
  nesting depth is measured on the raw text before `json.loads` sees it (deep JSON
  exhausts the parser's recursion); NaN and Infinity are refused by the parser;
- `swamla_model` is checked against `ModelConfig`'s own type hints (every field: type,
  range, list length; unknown keys refused), then across fields (one kind per layer, the
  head counts divide, ...); the error names the key;
- the layers and the embedding the config declares must be the ones `model.safetensors`
  holds (its header only: nothing is read or allocated for it);
- `tied_weights` may only name parameters of the built model, the target stored, the alias
  not, of equal shapes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

from ...base.errors import CheckpointError
from ...base.paths import read_regular

if typing.TYPE_CHECKING:  # pragma: no cover
    from ...model.config import ModelConfig

MAX_CONFIG_BYTES = 64 * 2**20
"""config.json holds dimensions and Engram's token map (one int per token): a few MB."""
MAX_DEPTH = 32
"""Deepest nesting of config.json (the writer's is 4)."""
MAX_INT = 2**24
"""Any other integer field: far above every real dimension, small enough for any loop."""
MAX_LIST = 4096
MAX_TEXT = 512
MAX_TIED = 64
_INT_RANGES: dict[str, tuple[int, int]] = {
    "n_layer": (1, 0),  # 0: filled with MAX_LAYERS (imported lazily: model is heavy)
    "n_embd": (1, 2**16),
    "n_head": (1, 4096),
    "n_kv_head": (1, 4096),
    "head_dim": (1, 4096),
    "vocab_size": (1, 2**22),
    "block_size": (1, 0),  # 0: MAX_BLOCK_SIZE
    "n_experts": (1, 4096),
    "top_k": (1, 4096),
    "n_hash_heads": (1, 64),
    "slot": (1, 2**16),
    "conv_kernel": (1, 64),
}
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "attn_factor": (1e-6, 1e6),
    "theta": (1.0, 1e12),
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def read_config_file(path: Path) -> dict[str, Any]:
    """The JSON object in `path`: a regular file, bounded in size and depth; one line else."""
    if not path.exists():
        raise CheckpointError(f"{path.parent}: no {path.name} (not an exported checkpoint)")
    raw = read_regular(path, path.name, limit=MAX_CONFIG_BYTES, error=CheckpointError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not UTF-8 (byte at offset {e.start})") from None
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise CheckpointError(f"{path}: nested deeper than {MAX_DEPTH} levels (refused)")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: unreadable ({first[:80]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def json_depth(text: str) -> int:
    """The deepest nesting of `text`'s arrays and objects (strings skipped), stopping as
    soon as it passes `MAX_DEPTH` so a 100k-deep file costs as much as a shallow one."""
    depth = deepest = 0
    for ch in _STRING.sub("", text):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    break
        elif ch in "]}":
            depth -= 1
    return deepest


# ------------------------------------------------------------------------------ the model
def model_config(data: Mapping[str, Any], where: str) -> ModelConfig:
    """`swamla_model` as a `ModelConfig`, every field checked first (`CheckpointError`)."""
    from ...model.config import ModelConfig

    raw = data.get("swamla_model")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: not a swamla-tui export (no 'swamla_model')")
    cfg: ModelConfig = _dataclass(ModelConfig, raw, "swamla_model", where)
    _consistent(cfg, where)
    return cfg


def _bad(where: str, key: str, what: str) -> CheckpointError:
    return CheckpointError(f"{where}: config.json '{key}' {what}")


def _dataclass(cls: type[Any], raw: Any, key: str, where: str) -> Any:
    if not isinstance(raw, dict):
        raise _bad(where, key, f"must be an object, not {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in raw if k not in fields)
    if unknown:
        raise _bad(where, f"{key}.{unknown[0]}", "is not a field this version knows")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in raw:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise _bad(where, f"{key}.{name}", "is missing")
            continue
        kwargs[name] = _value(raw[name], hints[name], f"{key}.{name}", name, where)
    return cls(**kwargs)


def _value(value: Any, hint: Any, key: str, name: str, where: str) -> Any:
    """`value` checked against the field's type hint `hint` (and `name`'s range)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _value(value, inner[0], key, name, where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, key, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise _bad(where, key, f"must be true or false, not {_shown(value)}")
        return value
    if hint is int:
        return _int(value, key, name, where)
    if hint is float:
        return _float(value, key, name, where)
    if hint is str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise _bad(where, key, f"must be a text of at most {MAX_TEXT} characters")
        return value
    if origin is Literal:
        if not isinstance(value, str) or value not in args:
            raise _bad(
                where, key, f"must be one of {', '.join(map(str, args))}, not {_shown(value)}"
            )
        return value
    if origin is list:
        if not isinstance(value, list) or len(value) > MAX_LIST:
            raise _bad(where, key, f"must be a list of at most {MAX_LIST} items")
        return [_value(v, args[0], f"{key}[{i}]", name, where) for i, v in enumerate(value)]
    if origin is dict:  # `extra`: free-form, already bounded by the file's size and depth
        if not isinstance(value, dict):
            raise _bad(where, key, f"must be an object, not {_shown(value)}")
        return value
    raise _bad(where, key, "has a type this reader does not check")  # pragma: no cover


def _int(value: Any, key: str, name: str, where: str) -> int:
    from ...model.config import MAX_BLOCK_SIZE, MAX_LAYERS

    lo, hi = _INT_RANGES.get(name, (0, MAX_INT))
    if name == "n_layer":
        hi = MAX_LAYERS
    elif name == "block_size":
        hi = MAX_BLOCK_SIZE
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(where, key, f"must be an integer, not {_shown(value)}")
    if not lo <= value <= hi:
        raise _bad(where, key, f"is {_shown(value)}, out of range ({lo} to {hi})")
    return value


def _float(value: Any, key: str, name: str, where: str) -> float:
    lo, hi = _FLOAT_RANGES.get(name, (-1e6, 1e6))
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _bad(where, key, f"must be a number, not {_shown(value)}")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise _bad(where, key, f"is {_shown(value)}, out of range ({lo:g} to {hi:g})")
    return float(value)


def _shown(value: Any) -> str:
    text = json.dumps(value)[:40] if not isinstance(value, float) else repr(value)
    return text if text.isprintable() else repr(text)[1:-1]


def _consistent(cfg: ModelConfig, where: str) -> None:
    """What the constructor assumes of the fields together."""
    n = cfg.n_layer
    if len(cfg.layer_kinds) != n:
        raise _bad(
            where, "swamla_model.layer_kinds", f"has {len(cfg.layer_kinds)} kinds for {n} layers"
        )
    if cfg.kv_ranks and len(cfg.kv_ranks) != n:
        raise _bad(where, "swamla_model.kv_ranks", f"has {len(cfg.kv_ranks)} ranks for {n} layers")
    if len(cfg.ve_rows) > n:
        raise _bad(where, "swamla_model.ve_rows", f"has {len(cfg.ve_rows)} rows for {n} layers")
    if cfg.n_kv_head > cfg.n_head or cfg.n_head % cfg.n_kv_head:
        raise _bad(
            where, "swamla_model.n_kv_head", f"{cfg.n_kv_head} does not divide n_head {cfg.n_head}"
        )
    if cfg.n_deltanet and cfg.deltanet is None:
        raise _bad(where, "swamla_model.deltanet", "is missing (the layers name DeltaNet)")
    if cfg.moe is not None and cfg.moe.top_k > cfg.moe.n_experts:
        raise _bad(where, "swamla_model.moe.top_k", f"{cfg.moe.top_k} exceeds n_experts")
    e = cfg.engram
    if e is not None:
        if not e.orders or not e.layers:
            raise _bad(where, "swamla_model.engram", "needs its layers and n-gram orders")
        if any(i >= n for i in e.layers):
            raise _bad(where, "swamla_model.engram.layers", f"names a layer beyond {n}")
        if len(e.table_sizes) != len(e.orders) * e.n_hash_heads or not all(e.table_sizes):
            raise _bad(where, "swamla_model.engram.table_sizes", "does not fit orders x heads")


# ------------------------------------------------------------------------------ the weights
_LAYER = re.compile(r"transformer\.h\.(\d+)\.")


def check_weights_fit(cfg: ModelConfig, shapes: Mapping[str, tuple[int, ...]], where: str) -> None:
    """The layers and embedding the config declares are the ones the weights hold (before
    anything is built from the config)."""
    layers = {int(m.group(1)) for k in shapes if (m := _LAYER.match(k))}
    if layers != set(range(cfg.n_layer)):
        held = f"layers 0-{max(layers)}" if layers else "no layers"
        if layers and len(layers) != max(layers) + 1:
            held = f"{len(layers)} layers numbered up to {max(layers)}"
        raise CheckpointError(
            f"{where}: config.json 'swamla_model.n_layer' is {cfg.n_layer} but model.safetensors "
            f"holds {held}"
        )
    wte = shapes.get("transformer.wte.weight")
    if wte is not None and tuple(wte) != (cfg.vocab_size, cfg.n_embd):
        raise CheckpointError(
            f"{where}: config.json says vocab_size x n_embd = {cfg.vocab_size} x {cfg.n_embd}, "
            f"but transformer.wte.weight is {' x '.join(map(str, wte))}"
        )


def tied_aliases(
    data: Mapping[str, Any],
    params: Mapping[str, tuple[int, ...]],
    stored: Mapping[str, tuple[int, ...]],
    where: str,
) -> dict[str, str]:
    """`tied_weights` ({alias: stored name}) checked against the built model's parameters
    (`params`, by name, duplicates included) and the stored tensors."""
    raw = data.get("tied_weights") or {}
    if not isinstance(raw, dict) or len(raw) > MAX_TIED:
        raise _bad(where, "tied_weights", f"must be an object of at most {MAX_TIED} names")
    tied: dict[str, str] = {}
    for alias, target in raw.items():
        key = f"tied_weights.{alias}"
        if not isinstance(target, str) or alias == target:
            raise _bad(where, key, "must name another stored tensor")
        if alias not in params or target not in params:
            missing = alias if alias not in params else target
            raise _bad(where, key, f"names {_shown(missing)}, not a parameter of this model")
        if alias in stored or target not in stored:
            raise _bad(where, key, "must tie a tensor that is not stored to one that is")
        if params[alias] != params[target]:
            raise _bad(where, key, "ties tensors of different shapes")
        tied[alias] = target
    return tied
