"""The pickle safety scan: what a checkpoint's pickle would do, decided before unpickling.

A checkpoint is untrusted data: a pickle can name and call any importable callable. The
scan walks the opcodes with a small symbolic stack (no object is built) and refuses:

- a global outside the allow-list, or an allowed value used as a callable (`torch.Tensor(n)`
  allocates n floats; a checkpoint never calls it),
- a numpy dtype that is not numeric (an object-dtype scalar is a raw pointer),
- the pickle extension registry (EXT1/2/4 names globals indirectly),
- nesting deeper than `MAX_DEPTH` (the C unpickler and hashing recurse: a 1M-deep tuple
  used as a dict key crashes the interpreter).

It also reports the pickle protocol and the storages the pickle declares (key, dtype,
element count), so sizes are checked against the file before torch allocates anything.
"""

from __future__ import annotations

import io
import pickletools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..base.errors import UnsafeCheckpointError

MAX_DEPTH = 200  # a real checkpoint nests ~10 levels (dict > state > dict > tensor > args)

# ----------------------------------------------------------------------------- allow-list
# Callables a checkpoint's pickle may call (REDUCE / NEWOBJ).
_CALLABLE = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_wrapper_subclass",
    "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._tensor._rebuild_from_type_v2",
    "torch.serialization._get_layout",
    "torch.device",
    "torch.Size",
    "builtins.set",
    "_codecs.encode",
    # numpy scalars in metadata (val_loss, step): what torch allows for weights_only
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
}
# Values a pickle may name but never call (classes passed to rebuild functions, dtypes).
_VALUE = {"torch.Tensor", "torch.nn.parameter.Parameter", "torch.storage.UntypedStorage",
          "torch.storage.TypedStorage"}  # fmt: skip
_VALUE_RE = re.compile(
    r"^torch\.(?:[A-Za-z0-9]+Storage|float\d*|bfloat16|half|double|u?int\d+|bool|"
    r"float8_\w+|complex\d+|strided|sparse_coo|contiguous_format|preserve_format)$"
    r"|^numpy\.dtypes\.(?:Bool|U?Int(?:8|16|32|64)|U?Long|U?LongLong|U?Byte|U?Short|"
    r"Float(?:16|32|64)|Complex(?:64|128))DType$"
)
# torchao's low-bit optimizer states (OptimStateFp8, OptimState8bit, OptimState4bit):
# tensor subclasses that only an optimizer needs; bound to an inert stand-in.
OPTIM_STATE_RE = re.compile(r"^torchao\.optim\.subclass_\w+\.OptimState\w+$")
# numeric numpy dtype codes (bool, ints, floats, complex), optionally with a byte order
_NUMERIC_DTYPE_RE = re.compile(r"^[<>|=]?(?:\?|b1|[iu][1248]|f[248]|c(?:8|16))$")


def allowed(name: str) -> bool:
    """May the pickle name this global at all (as a value or a callable)?"""
    return (
        name in _CALLABLE
        or name in _VALUE
        or bool(_VALUE_RE.match(name) or OPTIM_STATE_RE.match(name))
    )


def _callable(name: str) -> bool:
    return name in _CALLABLE


# ----------------------------------------------------------------------------- report
@dataclass
class Storage:
    """A storage the pickle declares (persistent id): its key, element type and count."""

    key: str
    type_name: str  # e.g. "torch.FloatStorage"
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * element_size(self.type_name)


@dataclass
class PickleReport:
    globals: set[str] = field(default_factory=set)
    protocol: int = 0
    storages: dict[str, Storage] = field(default_factory=dict)


def element_size(type_name: str) -> int:
    """Bytes per element of a legacy storage class name ("torch.HalfStorage" -> 2)."""
    short = type_name.rsplit(".", 1)[-1]
    try:
        dtype = torch.serialization.StorageType(short).dtype  # type: ignore[no-untyped-call]
    except (AttributeError, KeyError, RuntimeError):
        return 1  # UntypedStorage: counted in bytes
    return int(dtype.itemsize)


def _refuse(origin: str, what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{origin}: refused: {what}, which a checkpoint never needs "
        "(only tensors and plain containers are loaded; nothing was run)"
    )


# ----------------------------------------------------------------------------- the scan
class _V:
    """A symbolic stack value: what the scan needs to know about an object."""

    __slots__ = ("depth", "items", "kind", "value")

    def __init__(self, kind: str, value: Any = None, depth: int = 0, items: list[_V] | None = None):
        self.kind = kind  # "str" | "int" | "global" | "tuple" | "container" | "mark" | "other"
        self.value = value
        self.depth = depth
        self.items = items


_MARK = _V("mark")
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "STRING", "BINSTRING",
            "SHORT_BINSTRING"}  # fmt: skip
_INTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_EMPTY = {"EMPTY_TUPLE": "tuple", "EMPTY_LIST": "container", "EMPTY_DICT": "container",
          "EMPTY_SET": "container"}  # fmt: skip


class _Scanner:
    def __init__(self, origin: str, report: PickleReport) -> None:
        self.origin = origin
        self.report = report
        self.stack: list[_V] = []
        self.memo: dict[int, _V] = {}

    # -- stack helpers (a malformed pickle underflows: torch.load reports it later)
    def pop(self) -> _V:
        return self.stack.pop() if self.stack else _V("other")

    def pop_mark(self) -> list[_V]:
        items: list[_V] = []
        while self.stack:
            v = self.stack.pop()
            if v is _MARK:
                break
            items.append(v)
        items.reverse()
        return items

    def push(self, v: _V) -> None:
        if v.depth > MAX_DEPTH:
            raise _refuse(self.origin, f"the pickle nests more than {MAX_DEPTH} levels deep")
        self.stack.append(v)

    def grow(self, container: _V, children: Iterable[_V]) -> None:
        d = max((c.depth for c in children), default=0) + 1
        if d > container.depth:
            container.depth = d
            if d > MAX_DEPTH:
                raise _refuse(self.origin, f"the pickle nests more than {MAX_DEPTH} levels deep")

    def global_(self, name: str) -> None:
        self.report.globals.add(name)
        if not allowed(name):
            raise _refuse(self.origin, f"the file references '{name}'")
        self.push(_V("global", name))

    def call(self, fn: _V, args: _V) -> None:
        name = fn.value if fn.kind == "global" else None
        if not isinstance(name, str) or not _callable(name):
            what = f"calls '{name}'" if name else "calls the result of another call"
            raise _refuse(self.origin, f"the pickle {what}")
        if name == "numpy.dtype":
            code = args.items[0].value if args.items else None
            if not (isinstance(code, str) and _NUMERIC_DTYPE_RE.match(code)):
                raise _refuse(self.origin, f"a numpy value of dtype {code!r} (not numeric)")
        self.push(_V("other", name, args.depth + 1))

    def persistent(self, pid: _V) -> None:
        it = pid.items or []
        vals = [v.value for v in it]
        if len(vals) >= 5 and vals[0] == "storage" and isinstance(vals[2], str):
            numel = vals[4]
            if isinstance(numel, int) and isinstance(vals[1], str):
                self.report.storages[vals[2]] = Storage(vals[2], vals[1], numel)
        self.push(_V("other", depth=pid.depth + 1))

    # -- the walk
    def run(self, data: bytes | io.BufferedIOBase) -> None:
        for op, arg, _pos in pickletools.genops(data):  # type: ignore[arg-type]
            self.step(op, arg)
            if op.name == "STOP":
                return

    def step(self, op: pickletools.OpcodeInfo, arg: Any) -> None:  # noqa: C901 - one opcode table
        n = op.name
        if n == "PROTO":
            self.report.protocol = max(self.report.protocol, int(arg))
        elif n in ("FRAME", "STOP", "READONLY_BUFFER"):
            return
        elif n == "MARK":
            self.stack.append(_MARK)
        elif n in _STRINGS:
            self.push(_V("str", str(arg)))
        elif n in _INTS:
            self.push(_V("int", arg if isinstance(arg, int) else None))
        elif n in ("GLOBAL", "INST"):
            mod, _, attr = str(arg).partition(" ")
            if n == "INST":
                args = self.pop_mark()
                self.global_(f"{mod}.{attr}")
                self.call(
                    self.pop(),
                    _V("tuple", depth=1 + max((a.depth for a in args), default=0), items=args),
                )
            else:
                self.global_(f"{mod}.{attr}")
        elif n == "STACK_GLOBAL":
            a_v, m_v = self.pop(), self.pop()
            if m_v.kind == "str" and a_v.kind == "str":
                self.global_(f"{m_v.value}.{a_v.value}")
            else:
                raise _refuse(self.origin, "the pickle builds a global name the scan cannot read")
        elif n in ("EXT1", "EXT2", "EXT4"):
            raise _refuse(self.origin, "the pickle uses the extension registry")
        elif n == "MEMOIZE":
            self.memo[len(self.memo)] = self.stack[-1] if self.stack else _V("other")
        elif n in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[int(arg)] = self.stack[-1] if self.stack else _V("other")
        elif n in ("GET", "BINGET", "LONG_BINGET"):
            self.push(self.memo.get(int(arg), _V("other")))
        elif n in _EMPTY:
            self.push(_V(_EMPTY[n], depth=1, items=[] if n == "EMPTY_TUPLE" else None))
        elif n in ("TUPLE", "LIST", "DICT", "FROZENSET"):
            items = self.pop_mark()
            kind = "tuple" if n == "TUPLE" else "container"
            self.push(_V(kind, depth=1 + max((v.depth for v in items), default=0), items=items))
        elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
            items = [self.pop() for _ in range(int(n[-1]))][::-1]
            self.push(_V("tuple", depth=1 + max(v.depth for v in items), items=items))
        elif n in ("APPEND", "SETITEM", "BUILD"):
            children = [self.pop() for _ in range(2 if n == "SETITEM" else 1)]
            if self.stack:
                self.grow(self.stack[-1], children)
        elif n in ("APPENDS", "SETITEMS", "ADDITEMS"):
            children = self.pop_mark()
            if self.stack:
                self.grow(self.stack[-1], children)
        elif n in ("REDUCE", "NEWOBJ"):
            argv = self.pop()
            self.call(self.pop(), argv)
        elif n == "NEWOBJ_EX":
            self.pop()  # kwargs
            argv = self.pop()
            self.call(self.pop(), argv)
        elif n == "OBJ":
            items = self.pop_mark()
            fn, rest = (items[0], items[1:]) if items else (_V("other"), [])
            self.call(
                fn, _V("tuple", depth=1 + max((v.depth for v in rest), default=0), items=rest)
            )
        elif n == "BINPERSID":
            self.persistent(self.pop())
        elif n == "POP":
            self.pop()
        elif n == "POP_MARK":
            self.pop_mark()
        elif n == "DUP":
            self.push(self.stack[-1] if self.stack else _V("other"))
        else:  # values with no structure: floats, bytes, None, booleans, PERSID, buffers
            before = op.stack_before
            if pickletools.markobject in before:
                self.pop_mark()
            else:
                for _ in before:
                    self.pop()
            for _ in op.stack_after:
                self.push(_V("other"))


def scan_pickle(data: bytes | io.BufferedIOBase, origin: str, report: PickleReport) -> None:
    """Scan one pickle (bytes, or a file positioned at its start), adding to `report`.

    Raises `UnsafeCheckpointError` on anything a checkpoint never needs; a malformed
    pickle raises what `pickletools` raises (the caller decides what that means).
    """
    _Scanner(origin, report).run(data)


# ----------------------------------------------------------------------------- stand-ins
class OptimStateStandIn(torch.Tensor):
    """Inert stand-in for torchao's optimizer-state tensors: keeps its state, computes nothing."""

    @classmethod
    def __torch_dispatch__(  # type: ignore[override]
        cls, func: Any, types: Any, args: Any = (), kwargs: Any = None
    ) -> Any:
        raise RuntimeError("optimizer state is not loaded for inference")

    def __setstate__(self, state: Any) -> None:
        self._optim_state = state


_FP8_NAME = "torchao.optim.subclass_fp8.OptimStateFp8"
_stand_in_cache: dict[str, type] = {}


def stand_in(name: str) -> type:
    """The stand-in class for one torchao optimizer-state name (created once)."""
    if name not in _stand_in_cache:
        _stand_in_cache[name] = type(name.rsplit(".", 1)[1], (OptimStateStandIn,), {})
    return _stand_in_cache[name]


def stand_ins(names: set[str]) -> list[tuple[type, str]]:
    """One stand-in class per torchao optimizer-state name the pickle uses (FP8 always)."""
    return [
        (stand_in(n), n)
        for n in sorted({_FP8_NAME} | {n for n in names if OPTIM_STATE_RE.match(n)})
    ]


def numpy_globals(names: set[str]) -> list[tuple[Any, str]]:
    """The numpy objects (scalar reconstruct, dtype, numeric dtype classes) the pickle names.

    numpy is imported only when a checkpoint uses it; the scan has already checked that
    every dtype it builds is numeric.
    """
    wanted = sorted(n for n in names if n.startswith("numpy.") and allowed(n))
    if not wanted:
        return []
    import importlib

    if "numpy.dtype" in wanted:  # torch checks the class of each dtype the pickle builds
        try:
            dtypes = importlib.import_module("numpy.dtypes")
            wanted += [
                f"numpy.dtypes.{c}" for c in dir(dtypes) if _VALUE_RE.match(f"numpy.dtypes.{c}")
            ]
        except ImportError:
            pass

    out: list[tuple[Any, str]] = []
    for name in wanted:
        mod, _, attr = name.rpartition(".")
        try:
            out.append((getattr(importlib.import_module(mod), attr), name))
        except (ImportError, AttributeError):
            continue  # torch.load then names what it could not find
    return out
