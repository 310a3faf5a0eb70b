"""A checkpoint file to Python objects: parsed once, by us, with bounded memory.

Zip format (torch >= 1.6): `ckpt.zipread` verifies the container; the pickle is the one
member `<folder>/data.pkl` (the folder of the first entry; a second member named
data.pkl in any case is refused), read under a size cap and executed by our own
unpickler (`ckpt.pickle_vm`). Each storage it names must be the record
`<folder>/data/<key>` of exactly the declared size; a stored, aligned record becomes a
view of one private memory map of the file (so optimizer moments are never read), a
compressed or misaligned one is inflated or copied (bounded). torch never reads the file.

Legacy format (torch < 1.6): magic, protocol and system-info pickles, the object pickle,
the storage keys, then each storage as a length and its bytes. The object pickle runs
twice: once to learn the storages' types and sizes (checked against the file before
anything is read), once to build the tensors from the bytes found at verified offsets.
"""

from __future__ import annotations

import io
import mmap
import struct
from pathlib import Path
from typing import Any

import torch

from ..base.errors import CheckpointError, UnsafeCheckpointError
from .meanings import Meanings, StorageSource
from .pickle_vm import Budget, Machine, Source
from .zipread import STORED, Member, mb, member_bytes, read_index

PICKLE_CAP = 256 * 2**20  # bytes of one decompressed pickle member (real ones: a few MB)
EXPANSION_CAP = 32  # compressed records may expand this much over the file size (+ slack)
EXPANSION_SLACK = 64 * 2**20
_ALIGN = 64  # torch.save aligns record data to 64 bytes; others are copied, not mapped
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _no_storage(key: str, dtype: torch.dtype, numel: int) -> None:
    raise CheckpointError(f"storage '{key}' named where no storage can be")


def _run(src: Source, origin: str, budget: Budget, source: StorageSource = _no_storage) -> Any:
    return Machine(Meanings(origin, source, budget.charge), budget, origin).run(src)


def _empty_storage() -> torch.UntypedStorage:
    return torch.empty(0, dtype=torch.uint8).untyped_storage()


def _bytes_storage(data: bytes | memoryview) -> torch.UntypedStorage:
    if len(data) == 0:
        return _empty_storage()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).untyped_storage()


class _ZipStorages:
    """Storages for persistent ids, from verified records (see the module docstring)."""

    def __init__(self, path: Path, buf: memoryview, index: dict[str, Member], folder: str):
        self.path, self.buf, self.index, self.folder = path, buf, index, folder
        self.origin = str(path)
        self.mapped = True  # every storage so far is a view of the file's memory map
        self.expanded = 0
        self.limit = EXPANSION_CAP * len(buf) + EXPANSION_SLACK
        self._whole: torch.UntypedStorage | None = None

    def whole(self) -> torch.UntypedStorage:
        if self._whole is None:  # private (copy-on-write) map, as torch.load(mmap=True)
            whole = torch.UntypedStorage.from_file(str(self.path), False, len(self.buf))
            assert isinstance(whole, torch.UntypedStorage)
            self._whole = whole
        return self._whole

    def __call__(self, key: str, dtype: torch.dtype, numel: int) -> torch.UntypedStorage:
        rec = self.index.get(f"{self.folder}/data/{key}")
        nbytes = numel * dtype.itemsize
        have = rec.usize if rec is not None else 0
        if rec is None or have != nbytes:
            raise CheckpointError(
                f"{self.origin}: storage '{key}' declares {mb(nbytes)} ({numel:,} elements) "
                f"but the file holds {mb(have)} for it: the file is corrupt"
            )
        if nbytes == 0:
            return _empty_storage()
        if rec.method == STORED and rec.start % _ALIGN == 0:
            view: torch.UntypedStorage = self.whole()[rec.start : rec.start + nbytes]
            return view
        self.mapped = False
        if rec.method != STORED:
            self.expanded += nbytes
            if self.expanded > self.limit:
                raise UnsafeCheckpointError(
                    f"{self.origin}: refused: its compressed tensor records expand past "
                    f"{mb(self.limit)} from a {mb(len(self.buf))} file"
                )
        return _bytes_storage(member_bytes(self.buf, rec, nbytes, self.origin))


def _load_zip(path: Path, buf: memoryview) -> tuple[Any, bool]:
    origin = str(path)
    index = read_index(buf, origin)
    first = next(iter(index), "")
    folder = first.split("/", 1)[0] if "/" in first else ""
    main = f"{folder}/data.pkl"
    if not folder or main not in index:
        raise CheckpointError(f"{path}: a zip file, but not a PyTorch checkpoint")
    pickles = [n for n in index if n.rsplit("/", 1)[-1].casefold() == "data.pkl"]
    if len(pickles) > 1:
        raise UnsafeCheckpointError(
            f"{path}: refused: the zip holds {len(pickles)} members named data.pkl "
            f"({', '.join(repr(p) for p in pickles[:3])}); torch.save writes one"
        )
    order = index.get(f"{folder}/byteorder")
    if order is not None and member_bytes(buf, order, 16, origin) != b"little":
        raise CheckpointError(f"{path}: a big-endian checkpoint (not supported)")
    budget = Budget(len(buf), origin)
    pickle = index[main]  # an inflated pickle counts against the budget: no op-count bomb
    data = member_bytes(buf, pickle, min(PICKLE_CAP, budget.limit), origin)
    budget.charge(len(data) if pickle.method != STORED else 0)
    storages = _ZipStorages(path, buf, index, folder)
    obj = _run(io.BytesIO(data), origin, budget, storages)
    return obj, storages.mapped


def _load_legacy(path: Path, mm: mmap.mmap) -> Any:
    origin, size = str(path), len(mm)
    budget = Budget(size, origin)
    magic = _run(mm, origin, budget)
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (a pickle, but not one torch.save wrote)"
        )
    if _run(mm, origin, budget) != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: a legacy checkpoint of an unknown version")
    info = _run(mm, origin, budget)
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise CheckpointError(f"{path}: a big-endian checkpoint (not supported)")
    start = mm.tell()
    declared: dict[str, tuple[torch.dtype, int]] = {}

    def sizes_only(key: str, dtype: torch.dtype, numel: int) -> None:
        declared[key] = (dtype, numel)

    _run(mm, origin, budget, sizes_only)
    keys = _run(mm, origin, budget)
    if not (isinstance(keys, list) and all(k in declared for k in keys)):
        raise CheckpointError(f"{path}: the file is corrupt (its storage list is not valid)")
    if len(set(keys)) != len(keys) or set(keys) != set(declared):
        raise CheckpointError(f"{path}: the file is corrupt (its storage list does not match)")
    total = sum(n * dt.itemsize for dt, n in declared.values())
    if total > size:
        key = max(declared, key=lambda k: declared[k][1] * declared[k][0].itemsize)
        raise CheckpointError(
            f"{path}: its tensors declare {mb(total)} (largest: storage '{key}', "
            f"{declared[key][1]:,} elements) but the file has {mb(size)}: the file is corrupt"
        )
    spans: dict[str, tuple[int, int]] = {}
    at = mm.tell()
    for key in keys:
        dtype, numel = declared[key]
        if at + 8 > size:
            raise CheckpointError(f"{path}: the file is truncated (storage '{key}' is missing)")
        count = int(struct.unpack_from("<q", mm, at)[0])
        end = at + 8 + numel * dtype.itemsize
        if count != numel or end > size:
            raise CheckpointError(
                f"{path}: the file is truncated or corrupt (storage '{key}' holds "
                f"{count:,} of its {numel:,} elements)"
            )
        spans[key], at = (at + 8, end), end

    def from_file(key: str, dtype: torch.dtype, numel: int) -> torch.UntypedStorage:
        a, b = spans[key]
        return _bytes_storage(memoryview(mm)[a:b])

    mm.seek(start)
    return _run(mm, origin, Budget(size, origin), from_file)


def load_file(path: Path) -> tuple[Any, bool]:
    """The object a checkpoint file holds, and whether its tensors map the file."""
    try:
        with open(path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot be read ({e})") from None
    buf = memoryview(mm)
    try:
        if mm[:4] == b"PK\x03\x04":
            return _load_zip(path, buf)
        return _load_legacy(path, mm), False
    finally:
        try:
            buf.release()
            mm.close()
        except BufferError:  # a view is still referenced (an error's frame): freed later
            pass
