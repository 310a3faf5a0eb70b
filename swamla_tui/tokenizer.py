"""Tokenizer discovery (local first, never a surprise download) and incremental decoding."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checkpoint import _offline, _quiet_hub, has_tokenizer_files
from .errors import TokenizerError


def load_tokenizer(spec: str | os.PathLike[str] | None, *, folder: Path | None, name: str) -> Any:
    """Load a tokenizer: an explicit folder/name, else the checkpoint folder's files, else `name`.

    The local cache is always tried first; the Hub only when not offline.
    """
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        _quiet_hub()
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
        if _offline():
            raise
    return _from_pretrained(auto, name, local=False, wanted=name)


def _from_pretrained(auto: Any, target: str, *, local: bool, wanted: str) -> Any:
    try:
        tok = auto.from_pretrained(target, local_files_only=local)
    except Exception as e:  # transformers raises OSError/ValueError/HF errors
        if local:
            raise TokenizerError(
                f"tokenizer '{wanted}' is not available locally"
                + (" and the Hub is offline or unreachable" if _offline() else "")
                + ": pass --tokenizer PATH (a folder with tokenizer.json) or a cached name"
            ) from None
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise TokenizerError(
            f"tokenizer '{wanted}' could not be loaded ({first[:90]}): pass --tokenizer PATH"
        ) from None
    return tok


class IncrementalDecoder:
    """Turns a growing list of ids into text pieces without splitting a UTF-8 character.

    Byte-level BPE tokens can end mid-character; decoding only the new ids would print
    U+FFFD. We decode a small window and hold back text that ends in a replacement char.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.ids: list[int] = []
        self._start = 0  # ids before this are fully emitted
        self._emitted = ""  # text of ids[_start:] already emitted

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tok.decode(self.ids[self._start :], skip_special_tokens=False)
        if text.endswith("\ufffd"):
            return ""
        piece = text[len(self._emitted) :]
        self._emitted = text
        if len(self.ids) - self._start > 8:  # keep the window short
            self._start = len(self.ids)
            self._emitted = ""
        return piece

    def flush(self) -> str:
        text = self.tok.decode(self.ids[self._start :], skip_special_tokens=False)
        piece = text[len(self._emitted) :]
        self._start, self._emitted = len(self.ids), ""
        return piece
