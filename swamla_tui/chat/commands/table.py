"""The slash-command table: every command's name, aliases, synopsis and argument kind.

Pure data (no torch, no textual), shared by the parser (`commands.py`), the value parsers
(`command_values.py`), the help screen and the command palette, so that a command is
declared once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BY_NAME", "COMMANDS", "ArgKind", "CommandSpec", "lookup"]

ArgKind = Literal[
    "none", "help", "float", "int", "max", "seed", "text", "path", "opt_path", "switch"
]


@dataclass(frozen=True)
class CommandSpec:
    """What the help screen and autocompletion need to know about one command."""

    name: str
    """Canonical name without the slash, e.g. ``"temp"``."""
    args: str
    """Argument synopsis for the help screen, e.g. ``"[value]"``; empty when none."""
    help: str
    """One-line description."""
    kind: ArgKind
    """How the argument is parsed: none, help, float, int, max, seed, text, path, opt_path,
    switch (``on``/``off``; no argument toggles: `Command.value` None)."""
    param: str | None = None
    """`SamplingParams` field that the command reads or sets, if any."""
    aliases: tuple[str, ...] = ()
    force: bool = False
    """Whether ``/name!`` is accepted (``/save!`` overwrites an existing file)."""

    @property
    def usage(self) -> str:
        """``"/temp [value]"``: the synopsis shown in help and error messages."""
        return f"/{self.name} {self.args}".rstrip()


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "[command]", "List commands, or explain one", "help", aliases=("?",)),
    CommandSpec("quit", "", "Leave the app", "none", aliases=("q",)),
    CommandSpec("exit", "", "Leave the app (same as /quit)", "none"),
    CommandSpec("clear", "", "Start a new conversation (keeps the system prompt)", "none"),
    CommandSpec("retry", "", "Generate the last reply again", "none"),
    CommandSpec(
        "undo",
        "",
        "Back to the reply's previous branch, else drop the last exchange (your message "
        "goes back into the input)",
        "none",
    ),
    CommandSpec(
        "conversations",
        "",
        "Past conversations: open, rename, delete (Ctrl+O)",
        "none",
        aliases=("history",),
    ),
    CommandSpec(
        "model",
        "[path|repo]",
        "Show the model, or switch the chat to another checkpoint (the conversation stays)",
        "opt_path",
    ),
    CommandSpec(
        "temp",
        "[value]",
        "Show or set the temperature (0 = greedy)",
        "float",
        "temperature",
        aliases=("temperature",),
    ),
    CommandSpec(
        "topk",
        "[n]",
        "Show or set top-k (0 disables it)",
        "int",
        "top_k",
        aliases=("top_k", "top-k"),
    ),
    CommandSpec(
        "topp",
        "[value]",
        "Show or set top-p (nucleus) sampling",
        "float",
        "top_p",
        aliases=("top_p", "top-p"),
    ),
    CommandSpec(
        "reppen",
        "[value]",
        "Show or set the repetition penalty (1 = off)",
        "float",
        "repetition_penalty",
        aliases=("repetition_penalty", "rep"),
    ),
    CommandSpec(
        "max",
        "[n]",
        "Show or set the maximum number of new tokens per reply",
        "max",
        "max_new_tokens",
        aliases=("max_new_tokens", "maxtokens"),
    ),
    CommandSpec(
        "defaults",
        "",
        "Sampling settings back to their defaults (changes are remembered across starts)",
        "none",
        aliases=("reset",),
    ),
    CommandSpec(
        "seed",
        "[n|off]",
        "Show, set or clear (off) the random seed",
        "seed",
        "seed",
    ),
    CommandSpec(
        "system",
        "[text|off]",
        "Show, set or clear (off) the system prompt",
        "text",
    ),
    CommandSpec(
        "save",
        "[path]",
        "Save the conversation (.md or .json; a folder or none: a dated file there or in the data folder); "
        "/save! path replaces an existing file",
        "opt_path",
        force=True,
    ),
    CommandSpec("info", "", "Show the model card", "none"),
    CommandSpec(
        "stats",
        "",
        "Timings of the last reply: prompt tokens (reused from the last turn), prefill, "
        "time to first token, decode rate",
        "none",
    ),
    CommandSpec("copy", "", "Copy the last reply to the clipboard", "none"),
    CommandSpec(
        "markdown", "[on|off]", "Show replies as Markdown or raw text (remembered)", "switch"
    ),
    CommandSpec(
        "batch",
        "<file>",
        "Run every prompt of a file (one per line) and show the results",
        "path",
    ),
    CommandSpec(
        "ppl",
        "<file>",
        "Perplexity, loss and bits per byte of a UTF-8 text file under the model",
        "path",
        aliases=("perplexity",),
    ),
    CommandSpec("probs", "[on|off]", "Colour reply tokens by probability (remembered)", "switch"),
    CommandSpec(
        "experts",
        "",
        "MoE models: tokens per expert per layer, unused experts, router entropy of the last"
        " reply (needs /probs on)",
        "none",
    ),
    CommandSpec(
        "compare",
        "[path]",
        "Answer your last message again with the second model B (--compare B, or PATH "
        "loads it) and show both; the history keeps A's reply",
        "opt_path",
    ),
)

BY_NAME: dict[str, CommandSpec] = {}  # canonical names and aliases, lower case
for _spec in COMMANDS:
    for _key in (_spec.name, *_spec.aliases):
        BY_NAME[_key] = _spec


def lookup(name: str) -> CommandSpec | None:
    """The spec for a command name or alias (with or without the slash), else None."""
    key = name.strip().lower().removeprefix("/")
    return BY_NAME.get(key)
