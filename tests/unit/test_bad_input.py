"""Bad input: each failure is one line, of the right `SwamlaError` class, and runs nothing."""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import pytest
import torch

import swamla_tui
from swamla_tui.base.errors import (
    CheckpointError,
    SwamlaError,
    TokenizerError,
    UnsafeCheckpointError,
)
from swamla_tui.checkpoint.reader import read_checkpoint
from tests.support.helpers import FIXTURE_CKPT


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert msg, f"{type(err).__name__} with an empty message"
    assert "\n" not in msg and "\r" not in msg, repr(msg)
    assert "Traceback" not in msg
    return msg


def _load_err(source, cls=CheckpointError, **kw) -> str:
    kw.setdefault("tokenizer", False)
    with pytest.raises(cls) as ei:
        swamla_tui.load(source, **kw)
    assert isinstance(ei.value, SwamlaError)
    if cls is CheckpointError:  # plain bad input is not reported as an attack
        assert not isinstance(ei.value, UnsafeCheckpointError), str(ei.value)
    return _one_line(ei.value)


def _read_err(path, cls=CheckpointError) -> str:
    with pytest.raises(cls) as ei:
        read_checkpoint(path)
    return _one_line(ei.value)


# ------------------------------------------------------------------------------ not checkpoints
def test_truncated_file(tmp_path):
    data = FIXTURE_CKPT.read_bytes()
    p = tmp_path / "truncated.pt"
    p.write_bytes(data[: len(data) // 2])
    msg = _load_err(p)
    assert str(p) in msg
    assert "truncated" in msg or "corrupt" in msg


def test_truncated_legacy_file(tmp_path):
    full = tmp_path / "legacy.pt"
    torch.save(read_checkpoint(FIXTURE_CKPT)["model"], full, _use_new_zipfile_serialization=False)
    data = full.read_bytes()
    p = tmp_path / "legacy_truncated.pt"
    p.write_bytes(data[: len(data) // 2])
    msg = _load_err(p)
    assert str(p) in msg


def test_text_file(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("this is not a checkpoint\njust some text\n")
    msg = _load_err(p)
    assert str(p) in msg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes(tmp_path, seed):
    p = tmp_path / f"random{seed}.bin"
    p.write_bytes(random.Random(seed).randbytes(4096))
    _load_err(p)


def test_zip_that_is_not_a_checkpoint(tmp_path):
    p = tmp_path / "archive.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("hello.txt", "hello")
        zf.writestr("data/readme.md", "# nothing here")
    msg = _load_err(p)
    assert "zip" in msg and "not a PyTorch checkpoint" in msg


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pt"
    p.write_bytes(b"")
    msg = _load_err(p)
    assert "empty" in msg
    assert "empty" in _read_err(p)


def test_pickle_of_a_non_dict(tmp_path):
    p = tmp_path / "list.pt"
    torch.save([torch.zeros(2), torch.ones(3)], p)
    msg = _load_err(p)
    assert "list" in msg


def test_dict_without_tensors(tmp_path):
    p = tmp_path / "args.pt"
    torch.save({"lr": 0.1, "name": "run"}, p)
    msg = _load_err(p)
    assert "not an SWA-MLA checkpoint" in msg


# ------------------------------------------------------------------------------ other models
def _gpt2_like(with_wte: bool = True) -> dict[str, torch.Tensor]:
    c, v = 32, 100
    sd = {
        "transformer.wpe.weight": torch.zeros(64, c),
        "transformer.h.0.ln_1.weight": torch.ones(c),
        "transformer.h.0.ln_1.bias": torch.zeros(c),
        "transformer.h.0.attn.c_attn.weight": torch.zeros(c, 3 * c),
        "transformer.h.0.attn.c_attn.bias": torch.zeros(3 * c),
        "transformer.h.0.attn.c_proj.weight": torch.zeros(c, c),
        "transformer.h.0.mlp.c_fc.weight": torch.zeros(c, 4 * c),
        "transformer.ln_f.weight": torch.ones(c),
        "transformer.ln_f.bias": torch.zeros(c),
        "lm_head.weight": torch.zeros(v, c),
    }
    if with_wte:
        sd["transformer.wte.weight"] = torch.zeros(v, c)
    return sd


@pytest.mark.parametrize("container", ["bare", "training", "hub"])
def test_gpt2_like_state_dict(tmp_path, container):
    sd = _gpt2_like()
    obj = {
        "bare": sd,
        "training": {"model": sd, "config": {}, "step": 1},
        "hub": {"model_state_dict": sd, "config": {}, "total_tokens": 1, "val_loss": 1.0},
    }[container]
    p = tmp_path / "gpt2.pt"
    torch.save(obj, p)
    msg = _load_err(p)
    assert "not an SWA-MLA" in msg
    # names what is missing: the SWA or MLA attention of layer 0
    assert "transformer.h.0.attn.q_proj.weight" in msg or "transformer.h.0.attn.wkv_a.weight" in msg


def test_state_dict_missing_wte(tmp_path):
    p = tmp_path / "no_wte.pt"
    torch.save({"model": _gpt2_like(with_wte=False)}, p)
    msg = _load_err(p)
    assert "transformer.wte.weight" in msg and "missing" in msg


def test_swa_mla_state_dict_missing_a_weight(tmp_path):
    sd = {
        k.removeprefix("_orig_mod."): v for k, v in read_checkpoint(FIXTURE_CKPT)["model"].items()
    }
    del sd["transformer.h.3.mlp.down_proj.weight"]
    p = tmp_path / "partial.pt"
    torch.save({"model": sd}, p)
    msg = _load_err(p)
    assert "transformer.h.3.mlp.down_proj.weight" in msg


def test_swa_mla_state_dict_wrong_shape(tmp_path):
    sd = {
        k.removeprefix("_orig_mod."): v for k, v in read_checkpoint(FIXTURE_CKPT)["model"].items()
    }
    sd["transformer.h.0.attn.o_proj.weight"] = torch.zeros(64, 32)
    p = tmp_path / "wrong.pt"
    torch.save({"model": sd}, p)
    msg = _load_err(p)
    assert "transformer.h.0.attn.o_proj.weight" in msg


# ------------------------------------------------------------------------------ malicious pickles
class _Pwn:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_names(msg: str) -> bool:
    return "os.system" in msg or "posix.system" in msg or "nt.system" in msg


def _write_evil(kind: str, path: Path, marker: Path) -> None:
    payload = {"model": {"transformer.wte.weight": torch.zeros(4, 4)}, "config": _Pwn(marker)}
    if kind == "zip":
        torch.save(payload, path)
        assert zipfile.is_zipfile(path)
    elif kind == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
        assert not zipfile.is_zipfile(path)
    elif kind == "raw":
        path.write_bytes(pickle.dumps(_Pwn(marker), protocol=2))
    elif kind == "raw_dict":
        path.write_bytes(pickle.dumps({"model": {}, "x": _Pwn(marker)}, protocol=2))
    elif kind == "protocol4":  # SHORT_BINUNICODE + MEMOIZE + STACK_GLOBAL
        data = pickle.dumps(_Pwn(marker), protocol=4)
        assert pickle.STACK_GLOBAL in data
        path.write_bytes(data)
    elif kind == "protocol5_dict":
        path.write_bytes(pickle.dumps({"a": [1, 2, "system"], "b": _Pwn(marker)}, protocol=5))
    else:  # pragma: no cover
        raise AssertionError(kind)


_KINDS = ["zip", "legacy", "raw", "raw_dict", "protocol4", "protocol5_dict"]


def _refusal(tmp_path, kind: str, read) -> str:
    """Write an evil pickle of `kind`, read it with `read` (`_read_err` / `_load_err`): the
    message names what it refused and the payload never ran."""
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    _write_evil(kind, p, marker)
    msg: str = read(p, UnsafeCheckpointError)
    assert _evil_names(msg), msg
    assert not marker.exists(), "the pickle ran a command"
    return msg


@pytest.mark.parametrize("kind", _KINDS)
def test_malicious_pickle_refused_by_read_checkpoint(tmp_path, kind):
    _refusal(tmp_path, kind, _read_err)


@pytest.mark.parametrize("kind", _KINDS)
def test_malicious_pickle_refused_by_load(tmp_path, kind):
    assert "refused" in _refusal(tmp_path, kind, _load_err)


def test_malicious_pickle_in_a_hub_folder(tmp_path):
    marker = tmp_path / "pwned"
    sub = tmp_path / "repo" / "checkpoint_tokens_500k_loss_2.0000"
    sub.mkdir(parents=True)
    _write_evil("zip", sub / "pytorch_model.bin", marker)
    msg = _load_err(tmp_path / "repo", UnsafeCheckpointError)
    assert _evil_names(msg)
    assert not marker.exists()


def test_scanner_sees_a_global_after_a_failing_pickle(tmp_path):
    """A raw pickle followed by junk: the global found before the junk still refuses it."""
    marker = tmp_path / "pwned"
    p = tmp_path / "evil_then_junk.pt"
    p.write_bytes(pickle.dumps(_Pwn(marker), protocol=2) + b"\xff\xfe junk")
    msg = _read_err(p, UnsafeCheckpointError)
    assert _evil_names(msg)
    assert not marker.exists()


# ------------------------------------------------------------------------------ sources
def test_missing_path(tmp_path):
    for source in (tmp_path / "nope.pt", str(tmp_path / "nope"), "./nope/ckpt.bin"):
        msg = _load_err(source)
        assert "no such" in msg


def test_missing_file_read_checkpoint(tmp_path):
    assert "no such file" in _read_err(tmp_path / "absent.pt")
    assert "folder" in _read_err(tmp_path)


def test_empty_folder(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    msg = _load_err(d)
    assert "no checkpoint" in msg and str(d) in msg


def test_hub_folder_without_checkpoint(tmp_path, test_tokenizer_dir):
    d = tmp_path / "repo"
    sub = d / "checkpoint_tokens_500k_loss_2.3456"
    sub.mkdir(parents=True)
    (sub / "config.json").write_text('{"model_type": "swa_mla"}')
    (sub / "README.md").write_text("card\n")
    for f in test_tokenizer_dir.iterdir():
        (sub / f.name).write_bytes(f.read_bytes())
    msg = _load_err(d)
    assert "no checkpoint" in msg
    msg = _load_err(d, hf_checkpoint="checkpoint_tokens_500k_loss_2.3456")
    assert "no checkpoint" in msg


# ------------------------------------------------------------------------------ tokenizer
def test_tokenizer_missing_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    obj = read_checkpoint(FIXTURE_CKPT)
    args = dict(obj["config"], tokenizer_name="nobody-here/uncached-tokenizer")
    d = tmp_path / "run"
    d.mkdir()
    p = d / "checkpoint_200.pt"
    torch.save({"model": obj["model"], "config": args, "step": 200}, p)
    msg = _load_err(p, TokenizerError, tokenizer=None)
    assert "nobody-here/uncached-tokenizer" in msg
    assert "--tokenizer" in msg and "offline" in msg


def test_tokenizer_folder_without_files(tmp_path):
    from swamla_tui.runtime.tokenizer import load_tokenizer

    d = tmp_path / "tok"
    d.mkdir()
    with pytest.raises(TokenizerError) as ei:
        load_tokenizer(d, folder=None, name="x")
    assert str(d) in _one_line(ei.value)


def test_a_text_file_is_not_a_checkpoint_in_one_plain_line(tmp_path):
    """What ``/compare notes.txt`` or ``load("notes.txt")`` meets: the same rule as the CLI's
    quick check (a zip archive or a pickle), not a pickle scanner's internals."""
    import swamla_tui
    from swamla_tui.base.errors import CheckpointError

    notes = tmp_path / "notes.txt"
    notes.write_text("some notes about the run\n", encoding="utf-8")
    with pytest.raises(CheckpointError) as exc:
        swamla_tui.load(notes, tokenizer=False)
    assert str(exc.value) == (
        f"{notes}: not a PyTorch checkpoint (neither a zip archive nor a pickle; "
        "it starts with b'some')"
    )
