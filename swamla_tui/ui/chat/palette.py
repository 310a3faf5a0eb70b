"""The chat's entries in the command palette (Ctrl+P), next to Textual's own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

if TYPE_CHECKING:  # pragma: no cover
    from ..app import SwamlaApp

__all__ = ["chat_commands"]


def chat_commands(app: SwamlaApp) -> Iterator[SystemCommand]:
    yield SystemCommand("Clear conversation", "Start a new conversation", app.action_clear)
    yield SystemCommand("Retry", "Generate the last reply again", app.action_retry)
    yield SystemCommand("Save conversation", "Save as Markdown in the data folder", app.action_save)
    yield SystemCommand("Stop reply", "Stop the reply in progress", app.action_stop)
    yield SystemCommand("Toggle theme", "Switch between dark and light", app.action_toggle_theme)
    yield SystemCommand("Help", "Keys and slash commands", app.action_help)
    yield SystemCommand("Batch run", "Run every prompt of a file", lambda: app.open_batch(None))
    yield SystemCommand("Model info", "Show the model card", lambda: app.run_command("/info"))
