"""Crafted checkpoints of issue 21 (one parser): zips built byte by byte, so every field
two zip readers could read differently is under the test's control, and pickles that use
allowed names against their meaning. Everything here imports only the standard library,
so a fuzzing subprocess can import it before its memory limit is set.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


# ------------------------------------------------------------------------------ zips
@dataclass
class Entry:
    """One member as written; the `local_*`/`cd_*` overrides make the two headers disagree."""

    name: bytes
    data: bytes
    method: int = 0  # 0 stored, 8 deflated
    flags: int = 0x800
    local_name: bytes | None = None
    local_method: int | None = None
    cd_size: int | None = None  # both sizes in the central directory
    local_size: int | None = None  # both sizes in the local header
    cd_offset: int | None = None
    zip64_size: int | None = None  # sizes given as 0xFFFFFFFF + a zip64 extra (both headers)
    pad: int = 0  # extra-field bytes in the local header (torch aligns data to 64)
    extra: bytes = field(default=b"")


def build_zip(entries: list[Entry], comment: bytes = b"") -> bytes:
    """A zip with exactly these headers (no validation: that is the point)."""
    out = bytearray()
    central = bytearray()
    for e in entries:
        body = zlib.compress(e.data)[2:-4] if e.method == 8 else e.data
        crc = zlib.crc32(e.data) & 0xFFFFFFFF
        offset = len(out)
        csize, usize = len(body), len(e.data)

        def sizes(
            override: int | None, e: Entry = e, c: int = csize, u: int = usize
        ) -> tuple[int, int, bytes]:
            if e.zip64_size is not None:
                return 0xFFFFFFFF, 0xFFFFFFFF, struct.pack("<HHQQ", 1, 16, e.zip64_size,
                                                           e.zip64_size)  # fmt: skip
            if override is not None:
                return override, override, b""
            return c, u, b""

        lc, lu, lx = sizes(e.local_size)
        lname = e.name if e.local_name is None else e.local_name
        lextra = lx + e.extra + (struct.pack("<HH", 0x4246, e.pad - 4) + b"Z" * (e.pad - 4)
                                 if e.pad else b"")  # fmt: skip
        out += struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 20, e.flags,
            e.method if e.local_method is None else e.local_method, 0, 0, crc, lc, lu,
            len(lname), len(lextra),
        )  # fmt: skip
        out += lname + lextra + body
        cc, cu, cx = sizes(e.cd_size)
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, e.flags, e.method, 0, 0, crc, cc, cu,
            len(e.name), len(cx), 0, 0, 0, 0, offset if e.cd_offset is None else e.cd_offset,
        )  # fmt: skip
        central += e.name + cx
    cd_off = len(out)
    out += central
    out += struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), cd_off,
        len(comment),
    )  # fmt: skip
    return bytes(out + comment)


def torch_members(path: Path) -> list[tuple[str, bytes]]:
    """The members of a torch.save zip (read with zipfile: the file is benign)."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def rezip(members: list[tuple[str, bytes]], **overrides: Mapping[str, object]) -> bytes:
    """A torch zip rebuilt with `build_zip` (data aligned to 64 like torch's writer);
    `overrides` maps a member name to `Entry` fields to change."""
    entries = []
    at = 0
    for name, data in members:
        e = Entry(name.encode(), data)
        for k, v in overrides.get(name, {}).items():
            setattr(e, k, v)
        head = 30 + len(e.local_name if e.local_name is not None else e.name) + len(e.extra)
        e.pad = e.pad or (-(at + head + 4) % 64) + 4
        entries.append(e)
        at += head + e.pad + len(e.data)
    return build_zip(entries)


# ------------------------------------------------------------------------------ pickles
def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _global(mod: str, name: str) -> bytes:
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def model_dict(value: bytes) -> bytes:
    """Protocol 2: {"model": <value>} where `value` pushes one object."""
    return b"\x80\x02}" + _str("model") + value + b"s."


def from_type_alloc_pickle(n: int) -> bytes:
    """`_rebuild_from_type_v2(torch.Tensor, torch.Tensor, (n,), {})`: `torch.Tensor(n)`."""
    call = (
        _global("torch._tensor", "_rebuild_from_type_v2") + b"("
        + _global("torch", "Tensor") + _global("torch", "Tensor")
        + b"J" + struct.pack("<i", n) + b"\x85" + b"}" + b"tR"
    )  # fmt: skip
    return model_dict(call)


def tensor_call_pickle(n: int) -> bytes:
    """`torch.Tensor(n)` called directly."""
    return model_dict(_global("torch", "Tensor") + b"J" + struct.pack("<i", n) + b"\x85R")


def codec_bomb_pickle(depth: int, encoding: str = "hex") -> bytes:
    """`_codecs.encode(...(_codecs.encode("ab", enc), enc)..., enc)` nested `depth` times."""
    value = _str("ab")
    for _ in range(depth):
        value = _global("_codecs", "encode") + b"(" + value + _str(encoding) + b"tR"
    return model_dict(value)


def build_on_global_pickle(protocol: int = 2) -> bytes:
    """Sets `torch._utils._rebuild_tensor_v2.__defaults__ = (1,)` by BUILD, then returns a
    dict (protocol 4: STACK_GLOBAL and MEMOIZE, the path Python's unpickler used to take)."""
    state = b"}" + _str("__defaults__") + b"K\x01\x85s"
    if protocol >= 4:
        fn = b"\x8c\x0ctorch._utils\x94\x8c\x12_rebuild_tensor_v2\x94\x93\x94"
        return b"\x80\x04}" + _str("model") + fn + state + b"b" + b"s."
    return model_dict(_global("torch._utils", "_rebuild_tensor_v2") + state + b"b")


def build_on_ordered_dict_class_pickle() -> bytes:
    """BUILD on the class `collections.OrderedDict` (not an instance)."""
    return model_dict(_global("collections", "OrderedDict") + b"}" + _str("x") + b"K\x01sb")


def deep_tuple_pickle(depth: int) -> bytes:
    """{"model": ((((),),)...)} nested `depth` deep (~depth bytes)."""
    return model_dict(b")" + b"\x85" * depth)


def many_dicts_pickle(n: int) -> bytes:
    """A list of `n` empty dicts: ~1 byte of pickle for ~64 bytes of objects."""
    return model_dict(b"](" + b"}" * n + b"e")
