"""The chat's entries in the command palette (Ctrl+P), next to Textual's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

if TYPE_CHECKING:  # pragma: no cover
    from ..screens.chat import ChatScreen

__all__ = ["chat_commands"]


def chat_commands(
    screen: ChatScreen, toggle_theme: Callable[[], object]
) -> Iterator[SystemCommand]:
    yield SystemCommand("Clear conversation", "Start a new conversation", screen.action_clear)
    yield SystemCommand("Retry", "Generate the last reply again", screen.action_retry)
    yield SystemCommand(
        "Conversations",
        "Past conversations: open, rename, delete (Ctrl+O)",
        screen.action_conversations,
    )
    yield SystemCommand(
        "Switch model",
        "Type /model PATH_OR_REPO: the chat goes on with another checkpoint",
        lambda: screen.restore_input("/model "),
    )
    yield SystemCommand(
        "Sampling defaults",
        "Sampling settings back to their defaults (/defaults)",
        screen.reset_params,
    )
    yield SystemCommand(
        "Save conversation", "Save as Markdown in the data folder", screen.action_save
    )
    yield SystemCommand("Stop reply", "Stop the reply in progress", screen.action_stop)
    yield SystemCommand("Toggle theme", "Switch between dark and light", toggle_theme)
    yield SystemCommand("Help", "Keys and slash commands", screen.action_help)
    yield SystemCommand(
        "Batch run",
        "Run the five default prompts in the batch view (/batch FILE runs a file's)",
        lambda: screen.open_batch(None),
    )
    yield SystemCommand(
        "Batch results", "Reopen the last batch view and its results", screen.reopen_batch
    )
    yield SystemCommand("Model info", "Show the model card", lambda: screen.run_command("/info"))
