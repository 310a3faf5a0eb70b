"""Errors that carry a one-line, user-facing message.

Every failure a user can cause (bad checkpoint, missing tokenizer, bad prompts file,
bad slash-command value) is raised as a `SwamlaError` subclass so that the CLI and the
UI can show `str(err)` on one line instead of a traceback.
"""

from __future__ import annotations


class SwamlaError(Exception):
    """Base class: `str(err)` is a complete one-line message for the user."""


class CheckpointError(SwamlaError):
    """The checkpoint cannot be found, read or understood."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint's pickle references something outside the allow-list."""


class TokenizerError(SwamlaError):
    """The tokenizer cannot be loaded, or it failed while encoding or decoding."""


class PromptsFileError(SwamlaError):
    """The prompts file is missing, unreadable or not UTF-8."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A user-facing one-line reason for `exc`, never a traceback.

    A `SwamlaError` is already worded for the user; anything else is prefixed with its
    type name (``RuntimeError: ...``) because its message alone rarely says what failed.
    Line breaks are folded into spaces and the text is cut at `limit` characters.
    """
    text = " ".join(str(exc).split())
    if not text:
        text = type(exc).__name__
    elif not isinstance(exc, SwamlaError) and type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
