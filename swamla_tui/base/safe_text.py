"""Text that reaches the terminal: control characters made visible, never sent raw.

Model output (a tokenizer can decode to ESC), prompts files, state-dict key names and any
other string a checkpoint carries are untrusted. Sent raw to a terminal, an ``ESC ] 52``
sequence writes the user's clipboard and an ``ESC ] 0`` one renames the window; Rich and
Textual pass ESC and the C1 controls through unchanged. So every place that renders or
prints such text calls `visible` (the chat and batch views, ``--info``, notices, stderr
lines); files keep the raw text (JSONL, CSV, transcripts, ``/save``).

Pure Python, no imports beyond the standard library: the core and the UI both use it.
"""

from __future__ import annotations

import re

__all__ = ["json_line_safe", "pasted_text", "visible"]

# C0 controls (U+0000-U+001F) become the Unicode "control pictures" (U+2400-U+241F:
# ESC shows as "␛"), DEL as "␡"; newline and tab are kept. The C1 controls
# (U+0080-U+009F: U+009B is a one-character CSI on many terminals) have no pictures and
# show as their escape, e.g. "\x9b".
_KEEP = {"\n", "\t"}
_TABLE: dict[int, str] = {
    code: chr(0x2400 + code) for code in range(0x20) if chr(code) not in _KEEP
}
_TABLE[0x7F] = "\u2421"
for _code in range(0x80, 0xA0):
    _TABLE[_code] = f"\\x{_code:02x}"

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_RAW_C1 = re.compile("[\x7f-\x9f]")


def visible(text: str) -> str:
    """`text` safe for a terminal: every C0/C1 control except newline and tab made visible.

    A Windows line end (CR LF) becomes a plain newline first, so replies and files written
    on Windows do not show a "␍" at each line end; a lone CR (which would let text
    overwrite its own line) shows as "␍".
    """
    if _CONTROLS.search(text) is None:  # the common case: nothing to replace
        return text
    return text.replace("\r\n", "\n").translate(_TABLE)


def json_line_safe(line: str) -> str:
    """A JSON text with DEL and the C1 controls escaped as ``\\u00XX``.

    ``json.dumps(..., ensure_ascii=False)`` escapes C0 controls but writes DEL and C1
    raw; outside a JSON string they cannot occur, so escaping them in place keeps the same
    JSON value (a reader gets the raw text back) while the bytes are safe on a terminal.
    """
    return _RAW_C1.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


_PASTE_DROP = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def pasted_text(text: str) -> str:
    """Text pasted into an input, without its control characters.

    A paste is typed input, not output: an ESC or a C1 control in it would reach the
    screen as the input echoes it, and the model as part of the prompt, so they are
    dropped (not shown as pictures, which would then be sent). Line ends (CR LF, a lone
    CR) become newlines; newline and tab are kept.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _PASTE_DROP.sub("", text)
