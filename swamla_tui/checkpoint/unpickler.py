"""A restricted unpickler for pickles torch's `weights_only` reader cannot parse.

torch's weights_only unpickler implements the protocol-2 opcodes only, so a checkpoint
saved with `pickle_protocol=4` (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE) fails with
"Unsupported operand 149". For those files only, `torch.load` runs with this module as its
`pickle_module`: Python's own unpickler, whose `find_class` resolves nothing outside the
allow-list (the pattern of the `pickle` documentation's "Restricting Globals"). The
opcode scan has already refused any call of a non-allow-listed callable before this runs.
"""

from __future__ import annotations

import importlib
import pickle
import types
from typing import Any

from .safety import OPTIM_STATE_RE, allowed, stand_in


def _resolve(module: str, name: str) -> Any:
    full = f"{module}.{name}"
    if not allowed(full):
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {full}")
    if OPTIM_STATE_RE.match(full):
        return stand_in(full)
    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that can only resolve allow-listed globals."""

    def find_class(self, module: str, name: str) -> Any:
        return _resolve(module, name)


def _load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


def restricted_pickle_module() -> types.ModuleType:
    """A module object `torch.load(pickle_module=...)` accepts (`Unpickler`, `load`)."""
    mod = types.ModuleType("swamla_restricted_pickle")
    mod.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
    mod.load = _load  # type: ignore[attr-defined]
    mod.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return mod
