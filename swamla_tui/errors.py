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


def first_line(exc: BaseException, limit: int = 120) -> str:
    """The first non-empty line of an exception's message (its type name if it has none).

    Library errors often span many lines (torch's load errors, tracebacks of remote code);
    a user sees one line, cut to `limit` characters.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__
