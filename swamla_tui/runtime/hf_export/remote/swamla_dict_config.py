"""Rebuild the model's config dataclass from config.json (stdlib only).

Shipped in the export folder (imported by `modeling_swamla.py`) and used by swamla-tui's
own reader, which must not import transformers just for this.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (possibly nested) dataclass from `dataclasses.asdict` output.

    Unknown keys are an error, not ignored: a field this code does not know would
    otherwise be dropped silently and build a different model.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = _dataclass_in(hints.get(name))
        if isinstance(value, dict) and hint is not None:
            value = dataclass_from_dict(hint, value)
        kwargs[name] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field holds: `X` itself, or the X of `X | None` (nested configs
    such as the DeltaNet, MoE, Engram and FoPE parts are optional)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    return None
