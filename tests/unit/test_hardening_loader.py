"""Issue 11, loader items: crafted checkpoints end in one clean line, never a crash, hang,
large allocation or silent garbage. Each test builds its hostile input in tmp_path; the
ones that could allocate, recurse or block run in a subprocess under RLIMIT_AS (what torch
maps plus 512 MB, whichever torch build) with a timeout (tests/support/hostile.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import swamla_tui
from swamla_tui.base.errors import (
    CheckpointError,
    SwamlaError,
    TokenizerError,
    UnsafeCheckpointError,
)
from swamla_tui.checkpoint import tensors as ckpt_tensors
from tests.support.helpers import (
    FIXTURE_CKPT,
    fixture_args,
    fixture_checkpoint,
    fixture_max_diff,
    fixture_state_dict,
)
from tests.support.hostile import (
    PRELOAD,
    bomb_zip,
    data_pkl,
    deep_tuple_key_pickle,
    evil_global_pickle,
    inflate_storage_numel,
    remote_code_tokenizer,
    replace_pickle,
    run_limited,
    torch_zip,
    write_zip,
    zip_members,
)


def _load_err(path: Path, cls: type[SwamlaError] = CheckpointError, **kw: Any) -> str:
    kw.setdefault("tokenizer", False)
    with pytest.raises(cls) as ei:
        swamla_tui.load(path, **kw)
    msg = str(ei.value)
    assert msg and "\n" not in msg
    return msg


# ------------------------------------------------------------------ 0. the memory limit
def test_the_limit_stops_a_1_gb_tensor_and_not_the_torch_import():
    """Issue 26: the limit must not depend on the torch build (the CUDA build maps ~3 GB at
    import) and must still stop the smallest allocation the tests below rely on it for."""
    big = run_limited("import torch\nt = torch.empty(2**30, dtype=torch.uint8)\nprint('GOT')")
    assert big.returncode == 1 and "GOT" not in big.stdout, big.stdout + big.stderr[-1500:]
    assert "can't allocate memory" in big.stderr, big.stderr[-1500:]
    small = run_limited("import torch\nt = torch.ones(2**27, dtype=torch.uint8)\nprint(int(t[-1]))")
    assert small.returncode == 0 and "1\nDONE" in small.stdout, small.stderr[-1500:]


# ------------------------------------------------------------------ 1. strides and storages
def test_zero_stride_embedding_in_a_small_file_is_refused(tmp_path):
    """(4e6, 64) zero-stride embedding in a ~2 MB file: refused before any copy."""
    sd = fixture_state_dict()
    sd["transformer.wte.weight"] = torch.randn(64).expand(4_000_000, 64)
    p = torch_zip(tmp_path / "zero_stride.pt", {"model": sd, "config": fixture_args()})
    assert p.stat().st_size < 3 * 2**20
    out = run_limited(f"import swamla_tui\nswamla_tui.load({str(p)!r}, tokenizer=False)")
    msg = out.assert_clean_error()
    assert "transformer.wte.weight" in msg and "(4000000, 64)" in msg and "dense" in msg


def test_overlapping_weight_of_the_right_shape_is_refused(tmp_path):
    sd = fixture_state_dict()
    w = sd["transformer.h.0.mlp.down_proj.weight"]
    sd["transformer.h.0.mlp.down_proj.weight"] = torch.randn(w.shape[1]).expand(*w.shape)
    p = torch_zip(tmp_path / "overlap.pt", {"model": sd, "config": fixture_args()})
    msg = _load_err(p)
    assert "transformer.h.0.mlp.down_proj.weight" in msg and "dense" in msg


def test_interleaved_strides_count_as_overlap():
    base = torch.arange(20.0)
    assert ckpt_tensors.overlaps(base.as_strided((4, 4), (2, 1)))  # rows share elements
    assert not ckpt_tensors.overlaps(base.as_strided((4, 4), (5, 1)))  # gaps are fine
    assert not ckpt_tensors.overlaps(base.view(4, 5).t())
    assert ckpt_tensors.overlaps(base.as_strided((3, 2), (0, 1)))


def test_page_release_stays_inside_the_storage(tmp_path, monkeypatch):
    """The madvise range of a zero-stride view is clipped to its own (file-backed) storage."""
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\0" * (64 * 4096))
    store = torch.UntypedStorage.from_file(str(f), False, 64 * 4096)
    # torch's stub types `from_file` as returning any storage; it returns an UntypedStorage
    base = torch.empty(0, dtype=torch.float32).set_(store)  # type: ignore[arg-type]  # 65536 floats
    view = base.as_strided((4_000_000, 64), (0, 1), 4096)  # claims 1 GB, reads 256 bytes
    calls: list[tuple[int, int]] = []

    class _Libc:
        def madvise(self, addr: Any, length: Any, advice: int) -> int:
            calls.append((addr.value, length.value))
            return 0

    import ctypes

    monkeypatch.setattr(ctypes, "CDLL", lambda *_a, **_k: _Libc())
    ckpt_tensors.drop_mapped_pages(view)
    ckpt_tensors.drop_mapped_pages(base[1024:])
    lo, hi = store.data_ptr(), store.data_ptr() + store.nbytes()
    assert calls, "the dense tail of the file should be released"
    for addr, length in calls:
        assert lo <= addr and addr + length <= hi, (addr, length, lo, hi)


# ------------------------------------------------------------------ 2. compressed records
def test_compressed_tensor_records_load_correctly(tmp_path):
    """A zip whose tensor records are deflated is read without mmap: the reference logits."""
    base = torch_zip(
        tmp_path / "base.pt", {"model": fixture_state_dict(), "config": fixture_args()}
    )
    p = tmp_path / "deflated.pt"
    write_zip(p, zip_members(base), deflate_data=True)
    import zipfile

    with zipfile.ZipFile(p) as zf:
        assert any(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    lm = swamla_tui.load(p, tokenizer=False)
    assert fixture_max_diff(lm) <= 1e-4


# ------------------------------------------------------------------ 3. deep nesting
@pytest.mark.parametrize("container", ["raw", "zip"])
def test_million_deep_tuple_key_is_refused_without_a_crash(tmp_path, container):
    pk = deep_tuple_key_pickle(1_000_000)
    p = tmp_path / "deep.pt"
    if container == "raw":
        p.write_bytes(pk)
    else:
        write_zip(p, [("archive/data.pkl", pk), ("archive/version", b"3\n")])
    out = run_limited(f"import swamla_tui\nswamla_tui.load({str(p)!r}, tokenizer=False)")
    msg = out.assert_clean_error()
    assert "nests more than" in msg and "refused" in msg


def test_ordinary_nesting_still_loads(tmp_path):
    nested: Any = {"lr": 0.1}
    for _ in range(40):
        nested = {"inner": [nested]}
    p = torch_zip(
        tmp_path / "nested.pt",
        {"model": fixture_state_dict(), "config": fixture_args(), "extra": nested},
    )
    assert fixture_max_diff(swamla_tui.load(p, tokenizer=False)) <= 1e-4


# ------------------------------------------------------------------ 4. tokenizer remote code
def test_tokenizer_with_auto_map_never_runs_code_nor_prompts(
    tmp_path, monkeypatch, test_tokenizer_dir
):
    from swamla_tui.runtime.tokenizer import load_tokenizer

    marker = tmp_path / "ran"
    folder = remote_code_tokenizer(tmp_path / "tok", test_tokenizer_dir, marker)

    def no_prompt(*_a: Any, **_k: Any) -> str:
        raise AssertionError("the loader asked the user whether to run code")

    monkeypatch.setattr("builtins.input", no_prompt)
    try:
        tok = load_tokenizer(folder, folder=None, name="x")
        assert tok.decode(tok.encode("Hello there")) == "Hello there"
    except TokenizerError as e:
        assert "\n" not in str(e)
    assert not marker.exists(), "code from the tokenizer folder ran"
    assert "evil_tok" not in sys.modules


# ------------------------------------------------------------------ 6. scanner bypass
def test_decoy_pickle_member_does_not_hide_the_real_one(tmp_path):
    marker = tmp_path / "pwned"
    benign = torch_zip(tmp_path / "benign.pt", {"model": {"w": torch.zeros(2)}})
    members = zip_members(benign)
    prefix = members[0][0].split("/")[0]
    decoy = (f"{prefix}/aaa_data.pkl", data_pkl(benign))
    real = [(n, evil_global_pickle(marker) if n.endswith("/data.pkl") else d) for n, d in members]
    p = tmp_path / "decoy.pt"
    write_zip(p, [real[0], decoy, *real[1:]])
    msg = _load_err(p, UnsafeCheckpointError)
    assert "system" in msg
    assert not marker.exists()


def test_duplicate_member_names_are_refused(tmp_path):
    benign = torch_zip(tmp_path / "benign.pt", {"model": {"w": torch.zeros(2)}})
    members = zip_members(benign)
    p = tmp_path / "dup.pt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        write_zip(p, [*members, next(m for m in members if m[0].endswith("/data.pkl"))])
    msg = _load_err(p, UnsafeCheckpointError)
    assert "twice" in msg


# ------------------------------------------------------------------ 7. special files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_checkpoint_and_folder_are_refused_not_opened(tmp_path):
    fifo = tmp_path / "checkpoint_100.pt"
    os.mkfifo(fifo)
    out = run_limited(
        f"""
        import swamla_tui
        from swamla_tui.checkpoint.reader import read_checkpoint
        for src in ({str(fifo)!r}, {str(tmp_path)!r}):
            try:
                swamla_tui.load(src, tokenizer=False)
            except SwamlaError as e:
                print("MSG", e)
        read_checkpoint({str(fifo)!r})
        """,
        timeout=60,
    )
    msg = out.assert_clean_error()
    assert "FIFO" in msg
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("MSG")]
    assert "FIFO" in lines[0]
    assert "no checkpoint here" in lines[1]  # the folder's only *.pt is the FIFO


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_tokenizer_file_is_refused(tmp_path, test_tokenizer_dir):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((test_tokenizer_dir / "tokenizer.json").read_bytes())
    os.mkfifo(folder / "tokenizer_config.json")
    out = run_limited(
        f"""
        from swamla_tui.runtime.tokenizer import load_tokenizer
        from pathlib import Path
        load_tokenizer(Path({str(folder)!r}), folder=None, name="x")
        """,
        timeout=60,
        preload=(*PRELOAD, "transformers", "swamla_tui.runtime.tokenizer"),
    )
    assert "FIFO" in out.assert_clean_error()


# ------------------------------------------------------------------ 8. declared sizes
def test_zip_bombed_pickle_is_refused_under_the_memory_limit(tmp_path):
    p = tmp_path / "bomb.pt"
    bomb_zip(p, expanded_mb=300)
    assert p.stat().st_size < 2 * 2**20
    out = run_limited(f"import swamla_tui\nswamla_tui.load({str(p)!r}, tokenizer=False)")
    msg = out.assert_clean_error()
    assert "data.pkl" in msg and "MB" in msg


def test_huge_zero_stride_mask_in_a_small_file(tmp_path):
    sd = fixture_state_dict()
    sd["transformer.h.0.attn.mask"] = torch.zeros(1, 1).expand(10**7, 10**7)
    p = torch_zip(tmp_path / "mask.pt", {"model": sd, "config": fixture_args()})
    out = run_limited(f"import swamla_tui\nswamla_tui.load({str(p)!r}, tokenizer=False)")
    msg = out.assert_clean_error()
    # the mask's shape declares block_size: refused as such before any allocation
    named = "transformer.h.0.attn.mask" in msg and "(10000000, 10000000)" in msg
    assert named or "block_size 10000000 is out of range" in msg, msg


def test_storage_declared_larger_than_its_record(tmp_path):
    small = torch_zip(tmp_path / "small.pt", {"model": {"w": torch.zeros(10)}})
    p = tmp_path / "inflated.pt"
    inflate_storage_numel(small, p, 10**9)
    out = run_limited(f"import swamla_tui\nswamla_tui.load({str(p)!r}, tokenizer=False)")
    msg = out.assert_clean_error()
    assert "1,000,000,000 elements" in msg and "GB" in msg


def test_legacy_storage_declared_larger_than_the_file(tmp_path):
    p = tmp_path / "legacy.pt"
    torch.save({"model": {"w": torch.zeros(10)}}, p, _use_new_zipfile_serialization=False)
    data = p.read_bytes()
    at = data.index(b"cpu") + 3
    i = data.index(b"K\n", at)  # BININT1 10: the storage's element count
    p.write_bytes(data[:i] + b"J" + (10**9).to_bytes(4, "little") + data[i + 2 :])
    out = run_limited(f"import swamla_tui\nswamla_tui.load({str(p)!r}, tokenizer=False)")
    msg = out.assert_clean_error()
    # the scan's refusal, not the MemoryError of an allocation the limit stopped
    assert "its tensors declare" in msg and "1,000,000,000 elements" in msg, msg


# ------------------------------------------------------------------ 13. benign files
def test_numpy_scalar_metadata_loads(tmp_path):
    obj = {
        "model": fixture_state_dict(),
        "config": fixture_args(),
        "val_loss": np.float64(2.25),
        "step": np.int64(7),
    }
    p = torch_zip(tmp_path / "np.pt", obj)
    lm = swamla_tui.load(p, tokenizer=False)
    assert lm.meta["val_loss"] == 2.25 and type(lm.meta["val_loss"]) is float
    assert lm.meta["step"] == 7 and type(lm.meta["step"]) is int
    assert lm.card()["step"] == "7"


def test_object_dtype_numpy_scalar_is_refused(tmp_path):
    p = torch_zip(tmp_path / "np.pt", {"model": fixture_state_dict(), "val_loss": np.float64(2.25)})
    pk = data_pkl(p)
    assert b"X\x02\x00\x00\x00f8" in pk
    bad = tmp_path / "np_object.pt"
    replace_pickle(p, bad, pk.replace(b"X\x02\x00\x00\x00f8", b"X\x02\x00\x00\x00O8"))
    msg = _load_err(bad, UnsafeCheckpointError)
    assert "'O8'" in msg


@pytest.mark.parametrize("zipped", [True, False])
def test_pickle_protocol_4_loads(tmp_path, zipped):
    p = tmp_path / "p4.pt"
    obj = {
        "model": fixture_state_dict(),
        "config": fixture_args(),
        "step": 3,
        "val_loss": np.float64(1.5),
    }
    torch.save(obj, p, pickle_protocol=4, _use_new_zipfile_serialization=zipped)
    lm = swamla_tui.load(p, tokenizer=False)
    assert fixture_max_diff(lm) <= 1e-4
    assert lm.meta["step"] == 3 and lm.meta["val_loss"] == 1.5


def test_pickle_protocol_4_with_a_payload_is_still_refused(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class _Pwn:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    p = tmp_path / "p4_evil.pt"
    torch.save({"model": fixture_state_dict(), "x": _Pwn()}, p, pickle_protocol=4)
    assert pickle.FRAME in data_pkl(p)
    msg = _load_err(p, UnsafeCheckpointError)
    assert "system" in msg and not marker.exists()


# ------------------------------------------------------------------ 14. NaN / Inf weights
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_weights_warn_naming_the_first_tensor(tmp_path, bad):
    sd = fixture_state_dict()
    w = sd["transformer.h.2.attn.wkv_b.weight"].clone()
    w[3, 5] = bad
    sd["transformer.h.2.attn.wkv_b.weight"] = w
    p = torch_zip(tmp_path / "nan.pt", {"model": sd, "config": fixture_args()})
    lm = swamla_tui.load(p, tokenizer=False)
    notes = [n for n in lm.notices if "NaN" in n]
    assert len(notes) == 1 and "transformer.h.2.attn.wkv_b.weight" in notes[0]
    clean = swamla_tui.load(FIXTURE_CKPT, tokenizer=False)
    assert not any("NaN" in n for n in clean.notices)


# ------------------------------------------------------------------ 15. user's terms
def test_integer_weight_is_explained(tmp_path):
    sd = fixture_state_dict()
    k = "transformer.h.0.mlp.down_proj.weight"
    sd[k] = sd[k].long()
    p = torch_zip(tmp_path / "int.pt", {"model": sd, "config": fixture_args()})
    msg = _load_err(p)
    assert k in msg and "int64" in msg and "floating point" in msg
    assert "Error(s) in loading state_dict" not in msg


def test_tensor_built_from_a_string_is_refused(tmp_path):
    """`torch.Tensor('str')` in a pickle (raw: "new(): invalid data type 'str'")."""
    pk = b"\x80\x02}X\x05\x00\x00\x00modelctorch\nTensor\nX\x01\x00\x00\x00x\x85Rs."
    p = tmp_path / "str_tensor.pt"
    write_zip(p, [("archive/data.pkl", pk), ("archive/version", b"3\n")])
    msg = _load_err(p, UnsafeCheckpointError)
    assert "torch.Tensor" in msg and "new()" not in msg


def test_optimizer_state_as_a_weight_is_explained():
    state = next(iter(fixture_checkpoint()["optimizer"]["state"].values()))
    fp8 = next(v for v in state.values() if type(v).__name__ == "OptimStateFp8")
    with pytest.raises(CheckpointError) as ei:
        ckpt_tensors.check_state_dict({"transformer.wte.weight": fp8}, "ckpt.pt")
    msg = str(ei.value)
    assert "transformer.wte.weight" in msg and "optimizer state" in msg
    assert "not loaded for inference" not in msg
