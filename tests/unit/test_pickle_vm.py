"""Issue 21 items 2-4: our unpickler, its allow-list by meaning, its budget, and a process
that tried hostile files still loads the reference checkpoint exactly.

The crafted files are tried in one subprocess under RLIMIT_AS (tests/support/hostile.py):
each must end in a one-line refusal; afterwards the same process loads the fixture (logits
within 1e-4) and torch's rebuild functions are unchanged.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from swamla_tui.base.errors import CheckpointError, UnsafeCheckpointError
from swamla_tui.checkpoint.reader import read_checkpoint
from tests.support.helpers import FIXTURE_CKPT
from tests.support.hostile import run_limited
from tests.support.hostile_ckpt import (
    build_on_global_pickle,
    build_on_ordered_dict_class_pickle,
    codec_bomb_pickle,
    deep_tuple_pickle,
    from_type_alloc_pickle,
    many_dicts_pickle,
    rezip,
    tensor_call_pickle,
    torch_members,
)


def _zip_with_pickle(members: list[tuple[str, bytes]], pk: bytes) -> bytes:
    return rezip([(n, pk if n.endswith("/data.pkl") else d) for n, d in members])


def _crafted(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its refusal must hold)."""
    base = tmp_path / "base.pt"
    torch.save({"model": {"w": torch.ones(2)}}, base)
    members = torch_members(base)
    pkl = next(n for n, _ in members if n.endswith("/data.pkl"))
    folder = pkl.split("/")[0]
    cases = {
        # issue item 1: a benign data.pkl\0 and a hostile data.PKL (2,000,000-deep tuple)
        "nul_and_case": (
            rezip(
                [
                    *members,
                    (pkl + "\0", dict(members)[pkl]),
                    (f"{folder}/data.PKL", deep_tuple_pickle(2_000_000)),
                ]
            ),  # fmt: skip
            "refused",
        ),
        "deep_tuple": (_zip_with_pickle(members, deep_tuple_pickle(2_000_000)), "nests more"),
        "from_type_alloc": (_zip_with_pickle(members, from_type_alloc_pickle(2**30)), "refused"),
        "tensor_call": (_zip_with_pickle(members, tensor_call_pickle(7)), "torch.Tensor"),
        "codec_hex": (_zip_with_pickle(members, codec_bomb_pickle(30)), "_codecs.encode"),
        "codec_nested": (
            _zip_with_pickle(members, codec_bomb_pickle(30, "latin1")),
            "_codecs.encode",
        ),
        "build_global_p2": (
            _zip_with_pickle(members, build_on_global_pickle(2)),
            "_rebuild_tensor_v2",
        ),
        "build_global_p4": (
            _zip_with_pickle(members, build_on_global_pickle(4)),
            "_rebuild_tensor_v2",
        ),
        "build_class": (
            _zip_with_pickle(members, build_on_ordered_dict_class_pickle()),
            "OrderedDict",
        ),
    }
    out = {}
    for name, (data, needle) in cases.items():
        p = tmp_path / f"{name}.pt"
        p.write_bytes(data)
        out[name] = (p, needle)
    return out


def test_hostile_files_are_refused_and_the_process_stays_sound(tmp_path):
    cases = _crafted(tmp_path)
    files = {k: str(p) for k, (p, _) in cases.items()}
    out = run_limited(
        f"""
        import torch, torch._utils, torch._tensor, collections
        import swamla_tui
        from tests.support.helpers import fixture_max_diff
        watched = [torch._utils._rebuild_tensor_v2, torch._utils._rebuild_tensor,
                   torch._utils._rebuild_parameter, torch._tensor._rebuild_from_type_v2]
        before = [(f.__defaults__, f.__kwdefaults__, dict(f.__dict__)) for f in watched]
        od = dict(vars(collections.OrderedDict))
        for name, path in {files!r}.items():
            try:
                swamla_tui.load(path, tokenizer=False)
                print("LOADED", name)
            except SwamlaError as e:
                print("MSG", name, "|", str(e).replace(chr(10), "<NL>"))
        after = [(f.__defaults__, f.__kwdefaults__, dict(f.__dict__)) for f in watched]
        assert after == before, (before, after)
        assert dict(vars(collections.OrderedDict)) == od
        lm = swamla_tui.load({str(FIXTURE_CKPT)!r}, tokenizer=False)
        print("FIXTURE", fixture_max_diff(lm))
        """,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    msgs = {}
    for line in out.stdout.splitlines():
        if line.startswith("MSG "):
            name, _, msg = line[4:].partition(" | ")
            msgs[name] = msg
    for name, (_p, needle) in cases.items():
        assert name in msgs, f"{name} was not refused:\n{out.stdout[-2000:]}"
        assert needle in msgs[name] and "<NL>" not in msgs[name], (name, msgs[name])
    diff = float(next(ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("FIXTURE")))
    assert diff <= 1e-4


# ------------------------------------------------------------------ in-process, small files
def _raw(tmp_path: Path, pk: bytes) -> Path:
    base = tmp_path / "base.pt"
    torch.save({"model": {"w": torch.ones(2)}}, base)
    p = tmp_path / "x.pt"
    p.write_bytes(_zip_with_pickle(torch_members(base), pk))
    return p


def _err(p: Path, cls: type[CheckpointError] = UnsafeCheckpointError) -> str:
    with pytest.raises(cls) as ei:
        read_checkpoint(p)
    assert "\n" not in str(ei.value)
    return str(ei.value)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_every_protocol_loads_plain_containers(tmp_path, protocol):
    obj = {
        "model": {"a": 1},
        "n": [1, -2, 3.5, None, True, "é", b"\x00\xff", 2**70, -(2**70)],
        "t": (1, (2, 3)),
        "s": {1, 2},
        "f": frozenset({4}),
    }
    p = _raw(tmp_path, pickle.dumps(obj, protocol=protocol))
    assert read_checkpoint(p) == obj


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_tensors_load_under_every_protocol(tmp_path, protocol):
    sd = {"w": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
          "v": torch.arange(5, dtype=torch.int64)[1:], "p": torch.nn.Parameter(torch.ones(2))}  # fmt: skip
    p = tmp_path / "t.pt"
    torch.save({"model": sd}, p, pickle_protocol=protocol)
    got = read_checkpoint(p)["model"]
    assert torch.equal(got["w"], sd["w"]) and torch.equal(got["v"], sd["v"])
    assert got["v"].storage_offset() == 1 and type(got["p"]) is torch.nn.Parameter


def test_the_budget_refuses_before_allocating_and_fits_real_files(tmp_path, monkeypatch):
    """With a 1 MB margin the budget is ~4x the file: a pickle of 200,000 empty dicts
    (~200 KB, ~15 MB of objects) is refused; the reference checkpoint still fits."""
    from swamla_tui.checkpoint import pickle_vm

    monkeypatch.setattr(pickle_vm, "BUDGET_MARGIN", 2**20)
    msg = _err(_raw(tmp_path, many_dicts_pickle(200_000)))
    assert "MB of objects" in msg
    assert read_checkpoint(FIXTURE_CKPT)["model"]


def test_a_self_containing_list_is_refused(tmp_path):
    lst: list[object] = []
    lst.append(lst)
    msg = _err(_raw(tmp_path, pickle.dumps({"model": lst}, protocol=2)), CheckpointError)
    assert "itself" in msg


def test_filling_a_container_after_nesting_it_is_refused(tmp_path):
    # [] memo 0, ([],) , then APPEND into the list that is already inside the tuple
    pk = b"\x80\x02}X\x05\x00\x00\x00model]q\x00h\x00\x85h\x00K\x01a\x86s."
    assert "after nesting" in _err(_raw(tmp_path, pk), CheckpointError)


def test_set_of_a_deep_key_is_refused(tmp_path):
    key: object = ()
    for _ in range(300):
        key = (key,)
    pk = pickle.dumps({"model": {key: 1}}, protocol=2)
    assert "nests more" in _err(_raw(tmp_path, pk))


def test_storage_reached_past_its_end_is_refused(tmp_path):
    p = tmp_path / "t.pt"
    torch.save({"model": {"w": torch.ones(4)}}, p)
    members = torch_members(p)
    pk = next(d for n, d in members if n.endswith("/data.pkl"))
    # the size tuple (4,) -> (5,): one element past the 16-byte storage
    bad = pk.replace(b"K\x04\x85", b"K\x05\x85", 1)
    assert bad != pk
    q = tmp_path / "past.pt"
    q.write_bytes(_zip_with_pickle(members, bad))
    assert "reaches past its storage" in _err(q, CheckpointError)


def test_out_of_band_buffers_and_extensions_are_refused(tmp_path):
    assert "out-of-band" in _err(_raw(tmp_path, b"\x80\x05\x97."))
    assert "extension registry" in _err(_raw(tmp_path, b"\x80\x02\x82\x01."))


def test_an_inflated_pickle_counts_against_the_budget(tmp_path):
    """80 MB of NONE opcodes deflated to ~80 KB: under the 256 MB pickle cap, but past this
    file's budget, so it is refused before it is inflated (not after 80M opcodes)."""
    from tests.support.hostile import bomb_zip

    p = tmp_path / "ops.pt"
    bomb_zip(p, expanded_mb=80)
    assert p.stat().st_size < 2**20
    msg = _err(p)
    assert "data.pkl" in msg and "80.0 MB" in msg
