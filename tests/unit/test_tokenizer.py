"""Tokenizer files are untrusted: special and oversized files are refused unopened, and a
corrupt file is reported as corrupt, not as a missing download (issue 21 items 6, 9)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from swamla_tui.base.errors import TokenizerError
from swamla_tui.runtime.tokenizer import load_tokenizer


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _error(spec: Path | None, folder: Path | None = None) -> str:
    with pytest.raises(TokenizerError) as exc:
        load_tokenizer(spec, folder=folder, name="not-a-cached-name")
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_a_corrupt_tokenizer_json_is_called_corrupt(test_tokenizer_dir, tmp_path):
    tok = _copy(test_tokenizer_dir, tmp_path / "tok")
    data = (tok / "tokenizer.json").read_bytes()
    (tok / "tokenizer.json").write_bytes(data[: len(data) // 2])
    for spec, folder in ((tok, None), (None, tok)):
        text = _error(spec, folder)
        assert "corrupt or unsupported" in text and str(tok) in text
        assert "not available locally" not in text and "Hub" not in text


@pytest.mark.timeout(30)
def test_a_tokenizer_file_linked_to_a_device_is_refused(test_tokenizer_dir, tmp_path):
    tok = _copy(test_tokenizer_dir, tmp_path / "tok")
    (tok / "tokenizer.json").unlink()
    (tok / "tokenizer.json").symlink_to("/dev/zero")
    assert "is a device, not a tokenizer file" in _error(tok)


def test_an_oversized_tokenizer_file_is_refused(test_tokenizer_dir, tmp_path, monkeypatch):
    import swamla_tui.runtime.tokenizer as tokenizer

    monkeypatch.setattr(tokenizer, "MAX_TOKENIZER_FILE_BYTES", 1000)
    tok = _copy(test_tokenizer_dir, tmp_path / "tok")
    assert "larger than any tokenizer file" in _error(tok)


def test_a_good_folder_still_loads(test_tokenizer_dir):
    assert len(load_tokenizer(test_tokenizer_dir, folder=None, name="x")) > 0
