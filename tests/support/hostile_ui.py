"""Hostile inputs for the UI/CLI hardening tests (issue 11: items 5, 10, 11, 12, 15).

Each test builds its own hostile file or model from these pieces; nothing here is a
fixture on disk. `RAW_CONTROL` is the oracle: the control characters that must never
reach a terminal raw (every C0 except newline and tab, DEL, every C1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from tests.support.fakes import FakeLM, Outcome

# OSC 52 writes the clipboard, OSC 0 sets the window title, CSI 2J clears the screen;
# U+009B is a one-character CSI (C1), NUL and a lone CR round it off.
OSC52 = "\x1b]52;c;SGVsbG8=\x07"
TITLE = "\x1b]0;pwned\x07"
CSI_CLEAR = "\x1b[2J"
C1_CSI = "\x9b31m"
HOSTILE = f"{OSC52}clip{TITLE}title{CSI_CLEAR}clear{C1_CSI}red\x00nul\rcr"

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def raw_controls(text: str) -> list[str]:
    """The raw control characters in `text` (as hex, for a readable assertion)."""
    return [hex(ord(m.group())) for m in RAW_CONTROL.finditer(text)]


class PanicException(BaseException):
    """Stand-in for ``pyo3_runtime.PanicException``: what a Rust panic (e.g. in a
    tokenizer's regex) raises in Python. Like the real one it derives from BaseException,
    so ``except Exception`` misses it; the real class cannot be imported without first
    making some Rust code panic."""


class HostileBatchLM(FakeLM):
    """A chat and batch fake whose every output carries terminal escapes."""

    def __init__(self, completion: str = HOSTILE, **kwargs: Any) -> None:
        super().__init__(pieces=["Hi ", OSC52, "there", C1_CSI, TITLE], **kwargs)
        self.completion = completion
        self.source = f"evil{TITLE}.pt"
        self.notices = [f"ignored 1 unknown tensors (e.g. {OSC52}key)"]

    def summary(self) -> str:
        return f"1 params {CSI_CLEAR}· float32 · cpu"

    def generate_batch(
        self,
        texts: Sequence[str],
        params: Any = None,
        *,
        batch_size: int | None = None,
        stop: Sequence[str] = (),
        cancel: Any = None,
    ) -> Iterator[Outcome]:
        for i, text in enumerate(texts):
            if self.error_after is not None and i >= self.error_after:
                raise self.error
            yield Outcome(i, text, self.completion, 3, 0.5, "length")


def notification_texts(app: Any) -> list[str]:
    """The messages of the app's notifications (toasts), as given to ``notify``.

    Textual keeps them in the private ``App._notifications``; the tests need the text
    itself (a toast is cut to its width on screen).
    """
    return [n.message for n in app._notifications]


def deep_json_line(depth: int = 100_000) -> str:
    """A syntactically valid JSON line nested `depth` deep (200 KB at 100k): the C parser
    raises RecursionError on it."""
    return "[" * depth + "]" * depth
