"""The zip container of a checkpoint, read by us alone, with every ambiguity refused.

Two zip readers can disagree about one file (Python's `zipfile` cuts a name at a NUL,
torch's reader matches `data.pkl` ignoring case, a local header can name another member
than the central directory): whatever they read differently goes unchecked. So this is
the only reader. It parses the end record and the central directory, then verifies every
local header against its central entry, and refuses what two honest readers could take
two ways: two end records, names equal after case folding, NUL or control bytes in
names, local/central disagreement (name, method, sizes), records that overlap or reach
past the central directory, zip64 sizes beyond the file, encryption, unknown methods.
The offsets it returns are the only ones anything reads.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..base.errors import CheckpointError, UnsafeCheckpointError

_EOCD = b"PK\x05\x06"
_Z64_LOCATOR = b"PK\x06\x07"
_Z64_EOCD = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
STORED, DEFLATED = 0, 8
_DESCRIPTOR = 0x08  # flag bit 3: sizes and CRC follow the data (torch's writer sets it)
_UTF8 = 0x800
_ENCRYPTED = 0x01 | 0x40


@dataclass(frozen=True)
class Member:
    """One verified record: where its data lies and how it is stored."""

    name: str
    header: int  # offset of the local header
    start: int  # offset of the data
    csize: int
    usize: int
    method: int
    crc: int


def mb(n: int) -> str:
    """A byte count for a message."""
    if n < 2**20:
        return f"{n:,} bytes"
    return f"{n / 2**20:,.1f} MB" if n < 2**30 else f"{n / 2**30:,.1f} GB"


def _u16(b: bytes | memoryview, at: int) -> int:
    return int(struct.unpack_from("<H", b, at)[0])


def _u32(b: bytes | memoryview, at: int) -> int:
    return int(struct.unpack_from("<I", b, at)[0])


def _u64(b: bytes | memoryview, at: int) -> int:
    return int(struct.unpack_from("<Q", b, at)[0])


class _Reader:
    def __init__(self, buf: memoryview, origin: str) -> None:
        self.buf = buf
        self.size = len(buf)
        self.origin = origin

    def corrupt(self, why: str) -> CheckpointError:
        return CheckpointError(f"{self.origin}: the file is truncated or corrupt ({why})")

    def refuse(self, why: str) -> UnsafeCheckpointError:
        return UnsafeCheckpointError(
            f"{self.origin}: refused: {why} (torch.save never writes that; the zip could be "
            "read two ways)"
        )

    def need(self, at: int, n: int, what: str) -> None:
        if at < 0 or at + n > self.size:
            raise self.corrupt(f"{what} at byte {at:,} lies past the end of the file")

    # -- end records
    def end(self) -> tuple[int, int, int]:
        """(entries, central directory offset, its end) from the (zip64) end record."""
        lo = max(0, self.size - 22 - 0xFFFF)
        tail = bytes(self.buf[lo:])
        found = []
        i = tail.rfind(_EOCD)
        while i >= 0:
            if i + 22 <= len(tail) and i + 22 + _u16(tail, i + 20) == len(tail):
                found.append(lo + i)
            i = tail.rfind(_EOCD, 0, i)
        if not found:
            raise self.corrupt("no zip end record")
        if len(found) > 1:
            raise self.refuse("the zip has two end records")
        at = found[0]
        b = self.buf
        disk, cd_disk, n_here, n_all = (_u16(b, at + k) for k in (4, 6, 8, 10))
        cd_size, cd_off = _u32(b, at + 12), _u32(b, at + 16)
        limit = at
        loc = at - 20
        if loc >= 0 and bytes(b[loc : loc + 4]) == _Z64_LOCATOR:
            z64 = _u64(b, loc + 8)
            self.need(z64, 56, "the zip64 end record")
            if bytes(b[z64 : z64 + 4]) != _Z64_EOCD or z64 + 56 > loc:
                raise self.corrupt("bad zip64 end record")
            z = (_u32(b, z64 + 16), _u32(b, z64 + 20), _u64(b, z64 + 24), _u64(b, z64 + 32))
            z_size, z_off = _u64(b, z64 + 40), _u64(b, z64 + 48)
            for short, long_, full in ((n_all, z[3], 0xFFFF), (cd_size, z_size, 0xFFFFFFFF),
                                       (cd_off, z_off, 0xFFFFFFFF)):  # fmt: skip
                if short not in (full, long_):
                    raise self.refuse("the zip64 end record disagrees with the end record")
            disk, cd_disk, n_here, n_all = z
            cd_size, cd_off, limit = z_size, z_off, z64
        if disk or cd_disk or n_here != n_all:
            raise self.corrupt("a multi-disk zip")
        if cd_off + cd_size != limit:
            raise self.corrupt("the central directory does not end where the end record is")
        if n_all > cd_size // 46:
            raise self.corrupt(f"{n_all:,} entries cannot fit a {cd_size:,}-byte directory")
        return n_all, cd_off, cd_off + cd_size

    # -- central directory
    def name(self, raw: bytes, flags: int) -> str:
        try:
            name = raw.decode("utf-8") if flags & _UTF8 else raw.decode("cp437")
        except UnicodeDecodeError:
            raise self.refuse(f"the member name {raw[:60]!r} is not UTF-8") from None
        if not name.isprintable():  # NUL, control bytes, line separators
            raise self.refuse(f"the member name {name[:60]!r} holds a NUL or control byte")
        return name

    def zip64_extra(self, extra: bytes, want: list[bool]) -> list[int]:
        """The zip64 fields (usize, csize, offset) flagged 0xFFFFFFFF in `want` order."""
        at, found = 0, None
        while at + 4 <= len(extra):
            tag, n = _u16(extra, at), _u16(extra, at + 2)
            if at + 4 + n > len(extra):
                raise self.corrupt("a zip extra field runs past its header")
            if tag == 1:
                if found is not None:
                    raise self.refuse("a member has two zip64 extra fields")
                found = extra[at + 4 : at + 4 + n]
            at += 4 + n
        k = sum(want)
        if k == 0:
            return []
        if found is None or len(found) < 8 * k:
            raise self.corrupt("a zip64 size is missing")
        return [_u64(found, 8 * i) for i in range(k)]

    def central(self, n: int, at: int, end: int) -> list[tuple[Member, bytes, int]]:
        b = self.buf
        out = []
        for _ in range(n):
            if at + 46 > end or bytes(b[at : at + 4]) != _CENTRAL:
                raise self.corrupt("bad central directory entry")
            flags, method, crc = _u16(b, at + 8), _u16(b, at + 10), _u32(b, at + 16)
            csize, usize = _u32(b, at + 20), _u32(b, at + 24)
            nlen, elen, clen = _u16(b, at + 28), _u16(b, at + 30), _u16(b, at + 32)
            disk, off = _u16(b, at + 34), _u32(b, at + 42)
            if at + 46 + nlen + elen + clen > end:
                raise self.corrupt("a central directory entry runs past the directory")
            raw = bytes(b[at + 46 : at + 46 + nlen])
            extra = bytes(b[at + 46 + nlen : at + 46 + nlen + elen])
            wide = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, off == 0xFFFFFFFF]
            vals = iter(self.zip64_extra(extra, wide))
            usize = next(vals) if wide[0] else usize
            csize = next(vals) if wide[1] else csize
            off = next(vals) if wide[2] else off
            name = self.name(raw, flags)
            if flags & _ENCRYPTED:
                raise self.refuse(f"the member '{name}' is encrypted")
            if method not in (STORED, DEFLATED):
                raise self.refuse(f"the member '{name}' uses compression method {method}")
            if method == STORED and csize != usize:
                raise self.refuse(f"the stored member '{name}' declares two sizes")
            if disk != 0:
                raise self.corrupt("a multi-disk zip")
            out.append((Member(name, off, 0, csize, usize, method, crc), raw, flags))
            at += 46 + nlen + elen + clen
        if at != end:
            raise self.corrupt("the central directory holds more than its entries")
        return out

    # -- local headers
    def local(self, m: Member, raw: bytes, flags: int, cd_off: int) -> Member:
        b, at = self.buf, m.header
        self.need(at, 30, f"the record of '{m.name}'")
        if bytes(b[at : at + 4]) != _LOCAL:
            raise self.corrupt(f"no record where the directory puts '{m.name}'")
        lflags, lmethod, lcrc = _u16(b, at + 6), _u16(b, at + 8), _u32(b, at + 14)
        lcsize, lusize = _u32(b, at + 18), _u32(b, at + 22)
        nlen, elen = _u16(b, at + 26), _u16(b, at + 28)
        self.need(at + 30, nlen + elen, f"the record header of '{m.name}'")
        if bytes(b[at + 30 : at + 30 + nlen]) != raw:
            raise self.refuse(f"the record of '{m.name}' names another member")
        if lmethod != m.method or (lflags ^ flags) & (_ENCRYPTED | _DESCRIPTOR):
            raise self.refuse(f"the record of '{m.name}' disagrees with the directory (method)")
        extra = bytes(b[at + 30 + nlen : at + 30 + nlen + elen])
        if lusize == 0xFFFFFFFF or lcsize == 0xFFFFFFFF:
            lusize, lcsize = self.zip64_extra(extra, [True, True])
        local = (lcrc, lcsize, lusize)
        if local != (m.crc, m.csize, m.usize) and not (lflags & _DESCRIPTOR and local == (0, 0, 0)):
            raise self.refuse(f"the record of '{m.name}' disagrees with the directory (sizes)")
        start = at + 30 + nlen + elen
        if start + m.csize > cd_off:
            raise self.corrupt(f"the data of '{m.name}' runs past the end of its records")
        return Member(m.name, at, start, m.csize, m.usize, m.method, m.crc)


def read_index(buf: memoryview, origin: str) -> dict[str, Member]:
    """The members of a zip file, each verified (see the module docstring), by name."""
    r = _Reader(buf, origin)
    n, cd_off, cd_end = r.end()
    entries = r.central(n, cd_off, cd_end)
    seen: dict[str, str] = {}
    for m, _raw, _flags in entries:
        key = m.name.casefold()
        if key in seen:
            if seen[key] == m.name:
                raise r.refuse(f"the zip holds '{m.name}' twice")
            raise r.refuse(f"the zip holds '{seen[key]}' and '{m.name}'")
        seen[key] = m.name
    members = [r.local(m, raw, flags, cd_off) for m, raw, flags in entries]
    ordered = sorted(members, key=lambda m: m.header)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.start + a.csize > b.header:
            raise r.refuse(f"the records of '{a.name}' and '{b.name}' overlap")
    return {m.name: m for m in members}  # in directory order: the first names the folder


def member_bytes(buf: memoryview, m: Member, cap: int, origin: str) -> bytes:
    """A member's bytes; a compressed one is inflated to at most `cap` bytes (its declared
    size must be within the cap, and the data must inflate to exactly that, CRC matching)."""
    raw = buf[m.start : m.start + m.csize]
    if m.method == STORED:
        return bytes(raw)
    if m.usize > cap:
        raise UnsafeCheckpointError(
            f"{origin}: refused: '{m.name}' declares {mb(m.usize)} once inflated (limit {mb(cap)})"
        )
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(raw, m.usize + 1)
    except zlib.error as e:
        raise CheckpointError(f"{origin}: '{m.name}' is corrupt ({e})") from None
    if len(out) != m.usize or not d.eof or (zlib.crc32(out) & 0xFFFFFFFF) != m.crc:
        raise CheckpointError(
            f"{origin}: '{m.name}' is corrupt (it does not inflate to its declared "
            f"{m.usize:,} bytes with its CRC)"
        )
    return out
