"""Issue 21 item 1: the zip is read once, by us, and every ambiguity is refused in one line.

Each test rebuilds a small torch.save checkpoint byte by byte (tests/support/hostile_ckpt)
with one field changed; the unchanged rebuild must load, so each refusal is the change's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from swamla_tui.base.errors import CheckpointError, UnsafeCheckpointError
from swamla_tui.checkpoint.reader import read_checkpoint, read_checkpoint_mapped
from tests.support.hostile_ckpt import Entry, build_zip, rezip, torch_members


@pytest.fixture
def members(tmp_path: Path) -> list[tuple[str, bytes]]:
    p = tmp_path / "small.pt"
    torch.save({"model": {"w": torch.arange(12.0).view(3, 4), "b": torch.ones(3)}}, p)
    return torch_members(p)


def _write(tmp_path: Path, data: bytes, name: str = "x.pt") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _refused(p: Path, cls: type[CheckpointError] = UnsafeCheckpointError) -> str:
    with pytest.raises(cls) as ei:
        read_checkpoint(p)
    msg = str(ei.value)
    assert msg.startswith(str(p)) and "\n" not in msg, msg
    return msg


def _pkl(members: list[tuple[str, bytes]]) -> str:
    return next(n for n, _ in members if n.endswith("/data.pkl"))


def test_the_rebuilt_zip_loads_mapped(tmp_path, members):
    obj, mapped = read_checkpoint_mapped(_write(tmp_path, rezip(members)))
    assert torch.equal(obj["model"]["w"], torch.arange(12.0).view(3, 4))
    assert mapped  # aligned stored records are views of the file's memory map


def test_nul_in_a_name_is_refused(tmp_path, members):
    """`archive/data.pkl\\0` next to the real one: zipfile cut the name at the NUL."""
    pkl = _pkl(members)
    extra = (pkl + "\0", dict(members)[pkl])
    msg = _refused(_write(tmp_path, rezip([*members, extra])))
    assert "NUL or control byte" in msg


def test_names_equal_after_case_folding_are_refused(tmp_path, members):
    """`data.PKL` next to `data.pkl`: torch's reader matched it ignoring case."""
    pkl = _pkl(members)
    msg = _refused(_write(tmp_path, rezip([*members, (pkl[:-3] + "PKL", b"\x80\x02}.")])))
    assert "data.pkl" in msg and "data.PKL" in msg


def test_a_second_data_pkl_anywhere_is_refused(tmp_path, members):
    pkl = _pkl(members)
    other = pkl.split("/")[0] + "/sub/Data.pkl"
    msg = _refused(_write(tmp_path, rezip([*members, (other, b"\x80\x02}.")])))
    assert "data.pkl" in msg and "2 members" in msg


def test_duplicate_names_are_refused(tmp_path, members):
    msg = _refused(_write(tmp_path, rezip([*members, members[0]])))
    assert "twice" in msg


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"local_name": b"archive/data.pkx"}, "names another member"),
        ({"local_method": 8}, "method"),
        ({"local_size": 3}, "sizes"),
        ({"flags": 0x801}, "encrypted"),
        ({"method": 12}, "compression method 12"),
    ],
)
def test_local_header_disagreeing_with_the_directory_is_refused(tmp_path, members, change,
                                                                needle):  # fmt: skip
    pkl = _pkl(members)
    if "local_name" in change:
        change = {"local_name": pkl[:-1].encode() + b"x"}
    msg = _refused(_write(tmp_path, rezip(members, **{pkl: change})))
    assert needle in msg, msg


def test_overlapping_records_are_refused(tmp_path, members):
    """Two directory entries whose data ranges overlap (the same bytes read as two members)."""
    w = next(n for n, _ in members if n.endswith("/data/0"))
    # grow the record before `w` in both headers so that its data runs over `w`'s header
    names = [n for n, _ in members]
    before = names[names.index(w) - 1]
    size = len(dict(members)[before]) + 40
    data = rezip(members, **{before: {"cd_size": size, "local_size": size}})
    msg = _refused(_write(tmp_path, data))
    assert "overlap" in msg, msg


def test_a_record_past_the_end_of_the_file(tmp_path, members):
    pkl = _pkl(members)
    p = _write(tmp_path, rezip(members, **{pkl: {"cd_offset": 10**9}}))
    assert "past the end" in _refused(p, CheckpointError)


@pytest.mark.parametrize("size", [2**40, 2**63])
def test_zip64_sizes_beyond_the_file(tmp_path, members, size):
    pkl = _pkl(members)
    p = _write(tmp_path, rezip(members, **{pkl: {"zip64_size": size}}))
    msg = _refused(p, CheckpointError)
    assert "past the end" in msg or "declares" in msg, msg


def test_two_end_records_are_refused(tmp_path, members):
    plain = build_zip([Entry(n.encode(), d) for n, d in members])
    fake_end = plain[-22:-2] + b"\x00\x00"  # an end record with no comment
    msg = _refused(_write(tmp_path, plain[:-2] + len(fake_end).to_bytes(2, "little") + fake_end))
    assert "two end records" in msg


def test_storage_record_of_another_size_is_refused(tmp_path, members):
    rec = next(n for n, _ in members if n.endswith("/data/0"))
    changed = [(n, d + b"\0" * 4 if n == rec else d) for n, d in members]
    msg = _refused(_write(tmp_path, rezip(changed)), CheckpointError)
    assert "storage '0'" in msg and "corrupt" in msg


def test_deflated_records_load_and_a_bad_crc_is_refused(tmp_path, members):
    entries = [Entry(n.encode(), d, method=8 if "/data/" in n else 0) for n, d in members]
    obj, mapped = read_checkpoint_mapped(_write(tmp_path, build_zip(entries)))
    assert torch.equal(obj["model"]["b"], torch.ones(3)) and not mapped
    raw = bytearray(build_zip(entries))
    at = raw.index(b"PK\x01\x02")  # first central entry: the pickle (stored); the CRCs of
    body = bytes(raw)  # deflated records are checked when they are inflated
    rec = next(i for i, (n, _) in enumerate(members) if "/data/" in n)
    pos = at
    for _ in range(rec):
        pos = body.index(b"PK\x01\x02", pos + 4)
    raw[pos + 16] ^= 0xFF  # its CRC in the directory
    hdr = int.from_bytes(raw[pos + 42 : pos + 46], "little")
    raw[hdr + 14] ^= 0xFF  # and in its local header, so the two still agree
    msg = _refused(_write(tmp_path, bytes(raw), "crc.pt"), CheckpointError)
    assert "CRC" in msg
