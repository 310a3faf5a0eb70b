"""What the allowed globals of a checkpoint's pickle mean, done by us (`ckpt.safety`).

torch's own rebuild functions are never called: a tensor is a view (`set_`) of a storage
we read from a verified record, after its size, stride and offset were checked to stay
inside that storage; the element type comes from an allow-list; nothing allocates from a
size written in the pickle (meta and optimizer-state tensors have no data at all).
`_rebuild_from_type_v2` is accepted only around one of these rebuilds with `Tensor`,
`Parameter` or an optimizer-state stand-in; `_codecs.encode` only as latin-1 bytes of a
string; numpy scalars only of numeric dtypes; BUILD only sets attributes on an
`OrderedDict` the pickle created (a state dict's `_metadata`) or a numpy dtype marker's
byte order. Globals themselves are inert markers, so nothing can be set on them.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..base.errors import CheckpointError
from .safety import (
    CALLS,
    CLASSES,
    DTYPES,
    NUMERIC_DTYPE_RE,
    OPTIM_STATE_RE,
    REBUILDS,
    STORAGES,
    VALUES,
    OptimStateStandIn,
    allowed,
    refuse,
    stand_in,
)

MAX_DIMS = 64
MAX_EXTENT = 2**48  # a size or stride beyond this is no tensor a file can hold
_DEVICE_RE = re.compile(r"^(?:cpu|cuda|meta|mps|xpu)(?::\d{1,3})?$")
_ALLOWED_DTYPES = set(DTYPES.values())


def show(v: Any, limit: int = 60) -> str:
    """A value from the pickle for a one-line message: short, escaped, never a big repr."""
    if isinstance(v, int) and v.bit_length() > 200:
        return f"<a {v.bit_length()}-bit number>"
    if v is None or isinstance(v, (str, bytes, int, float, bool)):
        text = repr(v[:limit] if isinstance(v, (str, bytes)) else v)
        return text[:limit]
    if isinstance(v, tuple) and len(v) <= 6:
        return "(" + ", ".join(show(x, 20) for x in v)[:limit] + ")"
    return f"<{type(v).__name__}>"


class Global:
    """An allowed global as the pickle sees it: a name and a meaning, nothing callable."""

    __slots__ = ("meaning", "name")

    def __init__(self, name: str, meaning: str) -> None:
        self.name, self.meaning = name, meaning

    def __repr__(self) -> str:
        return f"<global {self.name}>"


@dataclass(frozen=True)
class StorageType:
    name: str
    dtype: torch.dtype


@dataclass
class Storage:
    """A storage a persistent id named: its bytes (None while only checking sizes)."""

    key: str
    dtype: torch.dtype
    nbytes: int
    data: torch.UntypedStorage | None


class Pending:
    """A tensor whose storage is not read yet (the legacy format's first pass)."""


class NpDtype:
    """numpy.dtype(code) before BUILD sets its byte order; a scalar is made from it."""

    def __init__(self, code: str) -> None:
        self.code, self.order = code, "="


# (key, element type, element count) -> the storage's bytes, or None to check sizes only
StorageSource = Callable[[str, torch.dtype, int], torch.UntypedStorage | None]


class Meanings:
    def __init__(self, origin: str, source: StorageSource, charge: Callable[[int], None]) -> None:
        self.origin = origin
        self.source = source
        self.charge = charge
        self.storages: dict[str, Storage] = {}

    # -- helpers
    def corrupt(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.origin}: not a valid checkpoint ({what})")

    def _int(self, v: Any, what: str, hi: int = MAX_EXTENT) -> int:
        if type(v) is not int or not 0 <= v < hi:
            raise self.corrupt(f"{what} {show(v)} is not a valid count")
        return v

    def _dims(self, v: Any, what: str) -> tuple[int, ...]:
        if not isinstance(v, tuple) or len(v) > MAX_DIMS:  # torch.Size is a tuple
            raise self.corrupt(f"a tensor {what} is not a tuple of up to {MAX_DIMS} numbers")
        return tuple(self._int(x, f"a tensor {what} entry") for x in v)

    def _dtype(self, v: Any) -> torch.dtype:
        if not isinstance(v, torch.dtype) or v not in _ALLOWED_DTYPES:
            raise self.corrupt(f"{show(v)} is not a tensor element type")
        return v

    @staticmethod
    def _empty(v: Any) -> bool:
        return v is None or (type(v) in (dict, collections.OrderedDict, tuple) and not v)

    # -- globals and persistent ids
    def resolve(self, name: str) -> Any:
        if name.startswith("__builtin__."):  # protocols 0-2 name builtins the Python 2 way
            name = "builtins." + name.removeprefix("__builtin__.")
        if not allowed(name):
            shown = name if name.isprintable() and len(name) <= 120 else show(name, 120)
            raise refuse(self.origin, f"the file references '{shown}'")
        if name in DTYPES:
            return DTYPES[name]
        if name in VALUES:
            return VALUES[name]
        if name in STORAGES:
            return StorageType(name, STORAGES[name])
        if name in CLASSES:
            return Global(name, CLASSES[name])
        if OPTIM_STATE_RE.match(name):
            return Global(name, "optim_state")
        return Global(name, CALLS[name])

    def persistent(self, pid: Any) -> Storage:
        ok = isinstance(pid, tuple) and pid[:1] == ("storage",)
        if not (ok and (len(pid) == 5 or (len(pid) == 6 and pid[5] is None))):  # 6: legacy
            raise self.corrupt(f"a persistent id {show(pid)} is not a storage")
        _, stype, key, _location, numel = pid[:5]
        if not (isinstance(stype, StorageType) and type(key) is str and key.isprintable()
                and 0 < len(key) <= 64):  # fmt: skip
            raise self.corrupt(f"a persistent id {show(pid)} is not a storage")
        numel = self._int(numel, "a storage size", 2**62)
        if key in self.storages:
            st = self.storages[key]
            if st.nbytes != numel * stype.dtype.itemsize:
                raise self.corrupt(f"storage '{key}' is declared with two sizes")
            return st
        data = self.source(key, stype.dtype, numel)
        st = Storage(key, stype.dtype, numel * stype.dtype.itemsize, data)
        self.storages[key] = st
        return st

    # -- calls
    def call(self, fn: Any, args: Any) -> Any:
        if not isinstance(fn, Global) or fn.meaning not in CALLS.values():
            what = f"'{fn.name}'" if isinstance(fn, Global) else "the result of another call"
            raise refuse(self.origin, f"the pickle calls {what}")
        if not isinstance(args, tuple):
            raise self.corrupt(f"'{fn.name}' called with {type(args).__name__} arguments")
        handler: Callable[..., Any] = getattr(self, f"_{fn.meaning}")
        try:
            return handler(*args)
        except TypeError as e:
            if "positional argument" not in str(e):
                raise
            raise self.corrupt(f"'{fn.name}' called with {len(args)} arguments") from None

    def _tensor(self, st: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype) -> Any:
        if not isinstance(st, Storage):
            raise self.corrupt("a tensor is rebuilt from something that is not a storage")
        size, stride = self._dims(size, "size"), self._dims(stride, "stride")
        offset = self._int(offset, "a tensor offset")
        if len(size) != len(stride):
            raise self.corrupt("a tensor's size and stride have different lengths")
        span = 0 if 0 in size else 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        need = (offset + span) * dtype.itemsize
        if need > st.nbytes:
            raise CheckpointError(
                f"{self.origin}: a tensor in it reaches past its storage (shape {size}, stride "
                f"{stride}, offset {offset} of {dtype} need {need:,} bytes; storage "
                f"'{st.key}' has {st.nbytes:,})"
            )
        self.charge(256)
        if st.data is None:
            return Pending()
        t = torch.empty((0,), dtype=dtype)
        return t.set_(st.data, offset, torch.Size(size), stride)  # type: ignore[call-overload]

    def _grad(self, t: Any, requires_grad: Any, hooks: Any, metadata: Any = None) -> Any:
        if type(requires_grad) is not bool:
            raise self.corrupt("a tensor's requires_grad is not a boolean")
        if not self._empty(hooks) or not self._empty(metadata):
            raise refuse(self.origin, "a tensor carries backward hooks or metadata")
        if requires_grad and isinstance(t, torch.Tensor) and t.is_floating_point():
            t.requires_grad_(True)
        return t

    def _tensor_v1(self, st: Any, offset: Any, size: Any, stride: Any) -> Any:
        dtype = st.dtype if isinstance(st, Storage) else None
        return self._tensor(st, offset, size, stride, self._dtype(dtype))

    def _tensor_v2(self, st: Any, offset: Any, size: Any, stride: Any, rg: Any, hooks: Any,
                   metadata: Any = None) -> Any:  # fmt: skip
        return self._grad(self._tensor_v1(st, offset, size, stride), rg, hooks, metadata)

    def _tensor_v3(self, st: Any, offset: Any, size: Any, stride: Any, rg: Any, hooks: Any,
                   dtype: Any, metadata: Any = None) -> Any:  # fmt: skip
        t = self._tensor(st, offset, size, stride, self._dtype(dtype))
        return self._grad(t, rg, hooks, metadata)

    def _parameter(self, data: Any, rg: Any, hooks: Any) -> Any:
        if isinstance(data, Pending):
            return data
        if type(data) is not torch.Tensor:
            raise self.corrupt("a parameter wraps something that is not a plain tensor")
        if type(rg) is not bool or not self._empty(hooks):
            raise refuse(self.origin, "a parameter carries backward hooks")
        return torch.nn.Parameter(data, requires_grad=rg and data.is_floating_point())

    def _parameter_with_state(self, data: Any, rg: Any, hooks: Any, state: Any) -> Any:
        if not self._empty(state):
            raise refuse(self.origin, "a parameter carries Python state")
        return self._parameter(data, rg, hooks)

    def _wrapper_subclass(self, cls: Any, dtype: Any, size: Any, stride: Any, offset: Any,
                          layout: Any, device: Any, rg: Any) -> Any:  # fmt: skip
        if not (isinstance(cls, Global) and cls.meaning == "optim_state"):
            raise refuse(self.origin, "a tensor subclass other than an optimizer state")
        size, stride = self._dims(size, "size"), self._dims(stride, "stride")
        if len(size) != len(stride) or layout is not torch.strided:
            raise self.corrupt("an optimizer state's layout is not a strided tensor")
        self.charge(256)
        return torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            stand_in(cls.name), size, strides=stride, dtype=self._dtype(dtype),
            storage_offset=self._int(offset, "an offset"), device=torch.device("cpu"),
        )  # fmt: skip  # no data: the stand-in computes nothing

    def _meta_tensor(self, dtype: Any, size: Any, stride: Any, rg: Any) -> Any:
        size, stride = self._dims(size, "size"), self._dims(stride, "stride")
        if len(size) != len(stride):
            raise self.corrupt("a tensor's size and stride have different lengths")
        self.charge(256)
        return torch.empty_strided(size, stride, dtype=self._dtype(dtype), device="meta")

    def _from_type(self, func: Any, new_type: Any, args: Any, state: Any) -> Any:
        if not (isinstance(func, Global) and func.meaning in REBUILDS):
            raise refuse(self.origin, "_rebuild_from_type_v2 around something not a rebuild")
        kind = new_type.meaning if isinstance(new_type, Global) else None
        if kind not in ("tensor_class", "parameter_class", "optim_state"):
            raise refuse(self.origin, "_rebuild_from_type_v2 of a type other than a tensor")
        ret = self.call(func, args)
        if isinstance(ret, Pending):
            return ret
        if kind == "optim_state":
            if type(ret) is not stand_in(new_type.name):
                raise refuse(self.origin, "an optimizer state rebuilt as another type")
            plain = (torch.Tensor, int, float, bool, str, type(None))
            if not (state is None or (type(state) is dict and all(
                    isinstance(v, plain) or (type(v) is tuple and len(v) <= MAX_DIMS
                                             and all(type(x) is int for x in v))
                    for v in state.values()))):  # fmt: skip
                raise self.corrupt("an optimizer state's state is not a dict of tensors")
            ret.__setstate__(state)
            return ret
        if not self._empty(state):
            raise refuse(self.origin, "a tensor carries Python state")
        if isinstance(ret, OptimStateStandIn) or not isinstance(ret, torch.Tensor):
            raise refuse(self.origin, "_rebuild_from_type_v2 of a non-tensor")
        cls = torch.Tensor if kind == "tensor_class" else torch.nn.Parameter
        return ret if type(ret) is cls else ret.as_subclass(cls)

    def _layout(self, name: Any) -> Any:
        if name != "torch.strided":
            raise refuse(self.origin, f"a tensor of layout {show(name)}")
        return torch.strided

    def _device(self, kind: Any, index: Any = None) -> torch.device:
        if not (isinstance(kind, str) and _DEVICE_RE.match(kind)):
            raise self.corrupt(f"{show(kind)} is not a device")
        if index is None:
            return torch.device(kind)
        return torch.device(kind, self._int(index, "a device index", 1024))

    def _size(self, dims: Any = ()) -> torch.Size:
        self.charge(64 + 8 * len(dims) if isinstance(dims, tuple) else 0)
        return torch.Size(self._dims(dims, "size"))

    def _set(self, items: Any = ()) -> set[Any]:
        if type(items) not in (list, tuple):
            raise self.corrupt("set() of something that is not a list")
        self.charge(256 + 64 * len(items))
        return set(items)

    def _frozenset(self, items: Any = ()) -> frozenset[Any]:
        return frozenset(self._set(items))

    def _empty_bytes(self) -> bytes:
        return b""

    def _ordered_dict(self, *args: Any) -> collections.OrderedDict[Any, Any]:
        if args:
            raise refuse(self.origin, "OrderedDict built from arguments")
        self.charge(128)
        return collections.OrderedDict()

    def _encode(self, text: Any, encoding: Any = None) -> bytes:
        if type(text) is not str or encoding not in ("latin1", "latin-1"):
            raise refuse(self.origin, "_codecs.encode other than latin-1 bytes of a string")
        self.charge(len(text) + 64)
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            raise self.corrupt("latin-1 bytes hold a character beyond 255") from None

    def _np_dtype(self, code: Any, align: Any = False, copy: Any = True) -> NpDtype:
        if not (isinstance(code, str) and NUMERIC_DTYPE_RE.match(code)):
            raise refuse(self.origin, f"a numpy value of dtype {show(code)} (not numeric)")
        return NpDtype(code)

    def _np_scalar(self, dtype: Any, data: Any = None) -> Any:
        if not isinstance(dtype, NpDtype) or type(data) is not bytes:
            raise refuse(self.origin, "a numpy scalar that is not a number")
        import numpy as np

        dt = np.dtype(dtype.code)
        dt = dt.newbyteorder(dtype.order) if dtype.order in "<>" else dt  # type: ignore[arg-type]
        if len(data) != dt.itemsize:
            raise self.corrupt(f"a numpy {dt} scalar of {len(data)} bytes")
        return np.frombuffer(data, dtype=dt)[0]

    # -- BUILD
    def build(self, obj: Any, state: Any) -> None:
        if isinstance(obj, NpDtype) and isinstance(state, tuple) and len(state) >= 2:
            if state[1] not in ("<", ">", "|", "="):
                raise self.corrupt(f"a numpy byte order {show(state[1])}")
            obj.order = state[1]
            return
        if type(obj) is collections.OrderedDict and type(state) is dict:
            if not all(type(k) is str and not k.startswith("__") for k in state):
                raise refuse(self.origin, "the pickle sets odd attributes on a dict")
            obj.__dict__.update(state)
            return
        what = obj.name if isinstance(obj, Global) else type(obj).__name__
        raise refuse(self.origin, f"the pickle sets the state of '{what}'")
