"""Tokenizer discovery: local first, never a surprise download, never code from a folder.

A tokenizer folder is untrusted like a checkpoint: its `tokenizer_config.json` may carry
an `auto_map` naming Python files in the folder. Tokenizers are always loaded with
`trust_remote_code=False` (transformers then refuses, or uses its own class, and never
asks), and a tokenizer file that is a FIFO or a device is refused before anything opens it.
Encoding and decoding go through `engine.text.TextCodec` (failures become one line).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..base.errors import TokenizerError, one_line
from ..checkpoint.sources import (
    TOKENIZER_FILES,
    has_tokenizer_files,
    offline,
    quiet_hub,
    special_file_kind,
)
from ..engine.text import PASS_THROUGH, IncrementalDecoder, TextCodec  # noqa: F401 - re-exported

# files transformers may open from a tokenizer folder
_OPENED = (*TOKENIZER_FILES, "special_tokens_map.json", "added_tokens.json", "merges.txt",
           "config.json", "chat_template.jinja")  # fmt: skip


MAX_TOKENIZER_FILE_BYTES = 256 * 2**20
"""The largest tokenizer file read (real ones are a few MB; a 250k-token vocabulary ~30 MB)."""


def _refuse_special_files(folder: Path) -> None:
    for name in _OPENED:
        kind = special_file_kind(folder / name)
        if kind is not None:
            raise TokenizerError(f"{folder / name}: is {kind}, not a tokenizer file (refused)")
        try:
            size = (folder / name).stat().st_size
        except OSError:
            continue
        if size > MAX_TOKENIZER_FILE_BYTES:
            raise TokenizerError(
                f"{folder / name}: {size >> 20} MB, larger than any tokenizer file "
                f"({MAX_TOKENIZER_FILE_BYTES >> 20} MB at most; refused)"
            )


def load_tokenizer(spec: str | os.PathLike[str] | None, *, folder: Path | None, name: str) -> Any:
    """Load a tokenizer: an explicit folder/name, else the checkpoint folder's files, else `name`.

    The local cache is always tried first; the Hub only when not offline.
    """
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        quiet_hub()
    except ImportError as e:  # pragma: no cover
        raise TokenizerError(f"transformers is needed to load a tokenizer: {e}") from None

    if spec is not None:
        target = os.fspath(spec)
        if Path(target).expanduser().is_dir():
            path = Path(target).expanduser()
            if not has_tokenizer_files(path):
                raise TokenizerError(f"{path}: no tokenizer files (tokenizer.json, vocab.json ...)")
            return _from_pretrained(AutoTokenizer, str(path), local=True, wanted=str(path))
        return _fetch(AutoTokenizer, target)
    if folder is not None and has_tokenizer_files(folder):
        return _from_pretrained(AutoTokenizer, str(folder), local=True, wanted=str(folder))
    return _fetch(AutoTokenizer, name)


def _fetch(auto: Any, name: str) -> Any:
    try:
        return _from_pretrained(auto, name, local=True, wanted=name)
    except TokenizerError:
        if offline():
            raise
    return _from_pretrained(auto, name, local=False, wanted=name)


def _from_pretrained(auto: Any, target: str, *, local: bool, wanted: str) -> Any:
    folder = Path(target).expanduser()
    if folder.is_dir():
        _refuse_special_files(folder)
    try:  # never run code shipped with a tokenizer, never ask whether to
        tok = auto.from_pretrained(target, local_files_only=local, trust_remote_code=False)
    except PASS_THROUGH:
        raise
    except BaseException as e:  # noqa: BLE001 - HF errors, and pyo3 panics of a bad tokenizer.json
        if "trust_remote_code" in str(e) or "custom code" in str(e):
            raise TokenizerError(
                f"tokenizer '{wanted}' needs code shipped with it (auto_map), which is never "
                "run: pass --tokenizer PATH with a plain tokenizer.json"
            ) from None
        if folder.is_dir():  # the files are there: they are what failed, not the Hub
            raise TokenizerError(
                f"{folder}: its tokenizer files are corrupt or unsupported "
                f"({one_line(e, 90)}): pass --tokenizer PATH"
            ) from None
        if local:
            raise TokenizerError(
                f"tokenizer '{wanted}' is not available locally"
                + (" and the Hub is offline or unreachable" if offline() else "")
                + ": pass --tokenizer PATH (a folder with tokenizer.json) or a cached name"
            ) from None
        raise TokenizerError(
            f"tokenizer '{wanted}' could not be loaded ({one_line(e, 90)}): pass --tokenizer PATH"
        ) from None
    return tok
