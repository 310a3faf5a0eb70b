"""What is inside a checkpoint file, read without unpickling and with bounded memory.

For the zip format this finds the exact pickle member torch will load (torch takes the
folder of the archive's first entry and reads `<folder>/data.pkl`), reads every pickle
member under a size cap (a zip-bombed `data.pkl` cannot expand past it), and detects
compressed tensor records: torch memory-maps records as raw bytes, so a compressed one
would load as garbage; those files are read without mmap instead (after a bound on how
much they expand). Declared storage sizes are checked against the records (zip) or the
file size (legacy format) before torch allocates anything.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..base.errors import CheckpointError, UnsafeCheckpointError
from .safety import PickleReport, scan_pickle

PICKLE_CAP = 256 * 2**20  # bytes of one decompressed pickle member (real ones: a few MB)
EXPANSION_CAP = 32  # compressed records may expand this much over the file size (+ slack)
EXPANSION_SLACK = 64 * 2**20


def _mb(n: int) -> str:
    if n < 2**20:
        return f"{n:,} bytes"
    return f"{n / 2**20:,.1f} MB" if n < 2**30 else f"{n / 2**30:,.1f} GB"


@dataclass
class Archive:
    """The result of checking a checkpoint file before `torch.load`."""

    is_zip: bool
    report: PickleReport = field(default_factory=PickleReport)
    compressed: bool = False  # some tensor record is compressed: load without mmap


def _local_method(path: Path, info: zipfile.ZipInfo) -> int:
    """The compression method in a record's local header (what a reader at the offset sees)."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        head = fh.read(30)
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise CheckpointError(f"{path}: the file is truncated or corrupt (bad zip record)")
    return int(struct.unpack("<H", head[8:10])[0])


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    if info.file_size > PICKLE_CAP:
        raise UnsafeCheckpointError(
            f"{path}: refused: the pickle '{info.filename}' declares {_mb(info.file_size)} "
            f"(limit {_mb(PICKLE_CAP)})"
        )
    with zf.open(info) as fh:  # the declared size may lie: never read past the cap
        data = fh.read(PICKLE_CAP + 1)
    if len(data) > PICKLE_CAP:
        raise UnsafeCheckpointError(
            f"{path}: refused: the pickle '{info.filename}' expands past {_mb(PICKLE_CAP)}"
        )
    return data


def inspect_zip(path: Path) -> Archive:
    """Scan every pickle member of a zip checkpoint; check records against declared sizes."""
    arc = Archive(is_zip=True)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise UnsafeCheckpointError(
                f"{path}: refused: the zip holds '{dup}' twice (torch.save never writes that)"
            )
        prefix = names[0].split("/", 1)[0] if names and "/" in names[0] else None
        main = f"{prefix}/data.pkl" if prefix else None
        if main is None or main not in names:
            raise CheckpointError(f"{path}: a zip file, but not a PyTorch checkpoint")
        by_name = {i.filename: i for i in infos}
        pickles = [main] + [n for n in names if n.endswith(".pkl") and n != main]
        for name in pickles:
            scan_pickle(_read_capped(zf, by_name[name], path), f"{path}", arc.report)
        expanded = 0
        for info in infos:
            if not info.filename.startswith(f"{prefix}/data/"):
                continue
            method = _local_method(path, info)
            if info.compress_type != zipfile.ZIP_STORED or method != zipfile.ZIP_STORED:
                arc.compressed = True
                expanded += info.file_size
        limit = EXPANSION_CAP * path.stat().st_size + EXPANSION_SLACK
        if expanded > limit:
            raise UnsafeCheckpointError(
                f"{path}: refused: its compressed tensor records expand to {_mb(expanded)} "
                f"from a {_mb(path.stat().st_size)} file"
            )
        for st in arc.report.storages.values():
            rec = by_name.get(f"{prefix}/data/{st.key}")
            have = rec.file_size if rec is not None else 0
            if st.nbytes > have:
                raise CheckpointError(
                    f"{path}: storage '{st.key}' declares {_mb(st.nbytes)} ({st.numel:,} "
                    f"elements) but the file holds {_mb(have)} for it: the file is corrupt"
                )
    return arc


def inspect_legacy(path: Path) -> Archive:
    """Scan the pickles of a legacy (non-zip) file or a raw pickle.

    The legacy format is magic, protocol, sys_info, the object, then the storages' bytes:
    a pickle that cannot be parsed ends the scan (torch.load then says why), but every
    global seen before it was already checked.
    """
    arc = Archive(is_zip=False)
    with open(path, "rb") as fh:
        for _ in range(4):
            try:
                scan_pickle(fh, str(path), arc.report)
            except UnsafeCheckpointError:
                raise
            except Exception:  # noqa: BLE001 - junk after a pickle; torch.load reports it
                break
    declared = sum(st.nbytes for st in arc.report.storages.values())
    size = path.stat().st_size
    if declared > size:
        big = max(arc.report.storages.values(), key=lambda s: s.nbytes)
        raise CheckpointError(
            f"{path}: its tensors declare {_mb(declared)} (largest: storage '{big.key}', "
            f"{big.numel:,} elements) but the file has {_mb(size)}: the file is corrupt"
        )
    return arc


def inspect(path: Path) -> Archive:
    """Check a regular file before `torch.load` (see the module docstring)."""
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not is_zip:
        return inspect_legacy(path)
    try:
        return inspect_zip(path)
    except (CheckpointError, MemoryError):
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        from ..base.errors import one_line

        raise CheckpointError(
            f"{path}: the file is truncated or corrupt ({one_line(e, 100)})"
        ) from None
