"""The allow-list of what a checkpoint's pickle may name, by meaning, and its inert stand-ins.

A pickle can name and call any importable callable; ours never imports or calls what a
pickle names. Each allowed name maps to a *meaning* that `ckpt.meanings` interprets itself
(a rebuild function becomes "build a view of a verified storage", `_codecs.encode` becomes
"latin-1 bytes of a string"), so an allowed function cannot be made to call its argument,
allocate from a size in the pickle, or be mutated: the pickle only ever holds inert
markers for globals. Anything else is refused with the name it used.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..base.errors import UnsafeCheckpointError

MAX_DEPTH = 200  # a real checkpoint nests ~10 levels (dict > state > dict > tensor > args)

# callables: the name a pickle uses -> what we do for it (ckpt.meanings)
CALLS = {
    "collections.OrderedDict": "ordered_dict",
    "torch._utils._rebuild_tensor": "tensor_v1",
    "torch._utils._rebuild_tensor_v2": "tensor_v2",
    "torch._utils._rebuild_tensor_v3": "tensor_v3",
    "torch._utils._rebuild_parameter": "parameter",
    "torch._utils._rebuild_parameter_with_state": "parameter_with_state",
    "torch._utils._rebuild_wrapper_subclass": "wrapper_subclass",
    "torch._utils._rebuild_meta_tensor_no_storage": "meta_tensor",
    "torch._tensor._rebuild_from_type_v2": "from_type",
    "torch.serialization._get_layout": "layout",
    "torch.device": "device",
    "torch.Size": "size",
    "builtins.set": "set",
    "builtins.frozenset": "frozenset",
    "builtins.bytes": "empty_bytes",  # protocols 0-2 write b"" as bytes()
    "_codecs.encode": "encode",
    # numpy scalars in metadata (val_loss, step): what torch allows for weights_only
    "numpy.core.multiarray.scalar": "np_scalar",
    "numpy._core.multiarray.scalar": "np_scalar",
    "numpy.dtype": "np_dtype",
}
# the rebuild functions `_rebuild_from_type_v2` may wrap
REBUILDS = {"tensor_v1", "tensor_v2", "tensor_v3", "parameter", "parameter_with_state",
            "wrapper_subclass", "meta_tensor"}  # fmt: skip
# classes a pickle may name (never call): the `new_type` of `_rebuild_from_type_v2`
CLASSES = {"torch.Tensor": "tensor_class", "torch.nn.parameter.Parameter": "parameter_class"}
# storage classes -> element type (persistent ids name one per storage)
STORAGES: dict[str, torch.dtype] = {
    f"torch.{k}Storage": v
    for k, v in {
        "Double": torch.float64, "Float": torch.float32, "Half": torch.float16,
        "BFloat16": torch.bfloat16, "Long": torch.int64, "Int": torch.int32,
        "Short": torch.int16, "Char": torch.int8, "Byte": torch.uint8, "Bool": torch.bool,
        "ComplexFloat": torch.complex64, "ComplexDouble": torch.complex128,
    }.items()
}  # fmt: skip
STORAGES["torch.storage.UntypedStorage"] = torch.uint8
# element types a tensor may have (what `torch.<name>` resolves to)
DTYPES: dict[str, torch.dtype] = {
    f"torch.{d}": getattr(torch, d)
    for d in (
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "float8_e4m3fn",
        "float8_e5m2",
        "float8_e4m3fnuz",
        "float8_e5m2fnuz",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
        "complex64",
        "complex128",
        "double",
        "float",
        "half",
        "long",
        "int",
        "short",
    )  # fmt: skip
    if isinstance(getattr(torch, d, None), torch.dtype)
}
# other plain values torch may pickle (layouts, memory formats)
VALUES: dict[str, Any] = {
    f"torch.{n}": getattr(torch, n)
    for n in ("strided", "contiguous_format", "preserve_format", "channels_last")
}
# torchao's low-bit optimizer states (OptimStateFp8, OptimState8bit, OptimState4bit):
# tensor subclasses only an optimizer needs; built as an inert stand-in.
OPTIM_STATE_RE = re.compile(r"^torchao\.optim\.subclass_\w+\.OptimState\w+$")
# numeric numpy dtype codes (bool, ints, floats, complex), optionally with a byte order
NUMERIC_DTYPE_RE = re.compile(r"^[<>|=]?(?:\?|b1|[iu][1248]|f[248]|c(?:8|16))$")


def allowed(name: str) -> bool:
    """May the pickle name this global at all (as a value or a callable)?"""
    return (
        name in CALLS or name in CLASSES or name in STORAGES or name in DTYPES
        or name in VALUES or bool(OPTIM_STATE_RE.match(name))
    )  # fmt: skip


def refuse(origin: str, what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{origin}: refused: {what}, which a checkpoint never needs "
        "(only tensors and plain containers are loaded; nothing was run)"
    )


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


_stand_in_cache: dict[str, type[OptimStateStandIn]] = {}


def stand_in(name: str) -> type[OptimStateStandIn]:
    """The stand-in class for one torchao optimizer-state name (created once)."""
    if name not in _stand_in_cache:
        _stand_in_cache[name] = type(name.rsplit(".", 1)[1], (OptimStateStandIn,), {})
    return _stand_in_cache[name]
