"""Text in and out of the engine: a guarded tokenizer and the incremental detokenizer.

The tokenizer is third-party code fed untrusted text. Rust tokenizers can panic, and
pyo3's `PanicException` derives from `BaseException`, so it slips past `except Exception`
and would end the process with a traceback. `TextCodec` turns every failure inside
encode/decode (except interrupts) into a one-line `TokenizerError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..base.errors import TokenizerError, one_line

# what must never be swallowed: the user's Ctrl-C, interpreter exit, generator close
PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _failed(what: str, e: BaseException) -> TokenizerError:
    return TokenizerError(f"the tokenizer failed while {what} ({type(e).__name__}: {one_line(e)})")


class TextCodec:
    """encode/decode of a (Hugging Face) tokenizer; failures become `TokenizerError`."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return int(len(self.tokenizer))

    def encode(self, text: str) -> list[int]:
        try:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            return [int(i) for i in ids]
        except PASS_THROUGH:
            raise
        except BaseException as e:  # noqa: BLE001 - includes pyo3 PanicException
            raise _failed("encoding the prompt", e) from None

    def decode(self, ids: Sequence[int]) -> str:
        try:
            return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))
        except PASS_THROUGH:
            raise
        except BaseException as e:  # noqa: BLE001 - includes pyo3 PanicException
            raise _failed("decoding the reply", e) from None


def as_codec(tokenizer: Any) -> TextCodec:
    return tokenizer if isinstance(tokenizer, TextCodec) else TextCodec(tokenizer)


class IncrementalDecoder:
    """Turns a growing list of ids into text pieces without splitting a UTF-8 character.

    Byte-level BPE tokens can end mid-character; decoding only the new ids would print
    U+FFFD. We decode a small window and hold back text that ends in a replacement char.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.codec = as_codec(tokenizer)
        self.ids: list[int] = []
        self._start = 0  # ids before this are fully emitted
        self._emitted = ""  # text of ids[_start:] already emitted

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.codec.decode(self.ids[self._start :])
        if text.endswith("\ufffd"):
            return ""
        piece = text[len(self._emitted) :]
        self._emitted = text
        if len(self.ids) - self._start > 8:  # keep the window short
            self._start = len(self.ids)
            self._emitted = ""
        return piece

    def flush(self) -> str:
        text = self.codec.decode(self.ids[self._start :])
        piece = text[len(self._emitted) :]
        self._start, self._emitted = len(self.ids), ""
        return piece
