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
    """The tokenizer cannot be loaded (typically: not cached while offline)."""


class PromptsFileError(SwamlaError):
    """The prompts file is missing, unreadable or not UTF-8."""


class GenerationError(SwamlaError):
    """Generation failed (e.g. out of memory); the conversation is kept."""
