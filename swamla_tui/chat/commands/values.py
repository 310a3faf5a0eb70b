"""Value parsing for slash commands: numbers in range, seeds, paths, on/off words.

Every mistake is a `CommandError` whose `str()` is one line quoting (shortened) what the
user typed and saying what was expected, so the chat view can show it in place of a reply.
Kept apart from the command table and the dispatcher in `commands.py`.
"""

from __future__ import annotations

import math
import re

from ...base.errors import SwamlaError
from ...base.params import RANGES
from .table import CommandSpec

__all__ = [
    "CLEAR_WORDS",
    "SEED_MAX",
    "SWITCH_WORDS",
    "CommandError",
    "parse_float",
    "parse_int",
    "plain",
    "quote",
    "unquote",
]

# Largest seed accepted: fits a signed 64-bit integer, which every RNG we use accepts.
SEED_MAX = 2**63 - 1

# Words that clear an optional setting (/seed, /system).
CLEAR_WORDS = frozenset({"off", "none"})
# Values of an on/off command (/markdown).
SWITCH_WORDS = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}

_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT_RE = re.compile(r"[+-]?\d+", re.ASCII)

# Longest piece of user input quoted back in an error message.
_QUOTE_MAX = 40


class CommandError(SwamlaError):
    """A slash command could not be parsed; `str(err)` is a one-line message."""


def _shorten(text: str) -> str:
    return text[: _QUOTE_MAX - 1] + "…" if len(text) > _QUOTE_MAX else text


def quote(text: str) -> str:
    """Quote user input for an error message: shortened, never spanning lines."""
    return repr(_shorten(text))


def plain(text: str) -> str:
    """User text shown unquoted (a command name) but kept on one line."""
    text = _shorten(text)
    return text if text.isprintable() else repr(text)[1:-1]


def unquote(text: str) -> str:
    """A path argument without one pair of surrounding quotes."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1].strip()
    return text


def parse_float(spec: CommandSpec, args: str) -> float:
    """A finite number within the `RANGES` bounds of the command's sampling parameter."""
    assert spec.param is not None
    lo, hi = RANGES[spec.param]
    expected = f"/{spec.name} expects a number between {lo:g} and {hi:g}"
    if not _FLOAT_RE.fullmatch(args):
        raise CommandError(f"{expected}, got {quote(args)}")
    value = float(args)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CommandError(f"{expected}, got {quote(args)}")
    return value


def parse_int(spec: CommandSpec, args: str, lo: int, hi: int, note: str = "") -> int:
    """A whole number in [lo, hi]; `note` ends the expectation (e.g. " or 'off'")."""
    expected = f"/{spec.name} expects a whole number between {lo} and {hi}{note}"
    # More digits than the bound has is out of range: checked before int(), which raises
    # ValueError past 4,300 digits (Python's int-string limit).
    digits = args.lstrip("+-").lstrip("0")
    if not _INT_RE.fullmatch(args) or len(digits) > len(str(max(abs(lo), abs(hi)))):
        raise CommandError(f"{expected}, got {quote(args)}")
    value = int(digits or "0") * (-1 if args.startswith("-") else 1)
    if not lo <= value <= hi:
        raise CommandError(f"{expected}, got {quote(args)}")
    return value
