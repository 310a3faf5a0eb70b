"""Slash-command parser for the chat input (pure Python: no torch, no textual).

The UI hands every submitted line that `is_command` accepts to `parse_command` and acts on
the returned `Command`; any mistake the user can make comes back as a `CommandError` whose
`str()` is one line naming what was expected, so the UI can show it in place of a reply.

Decisions (the UI relies on them):

* A command is a line whose first non-blank character is ``/``. A line starting with
  ``//`` is *not* a command: it is a message whose first ``/`` was escaped, and
  `literal_text` turns it into the text to send (``//etc`` -> ``/etc``).
* Command names are case-insensitive. Unambiguous prefixes are **not** accepted (``/cl``
  could wipe a conversation by accident); unknown names get a "did you mean" hint.
  A few long aliases are accepted (``/temperature``, ``/top_k``, ``/max_new_tokens``...,
  ``/?`` for ``/help``).
* Value commands without a value mean "show the current value": `Command.value` is None
  and `Command.shows` is True.
* ``/seed off`` / ``/seed none`` and ``/system off`` / ``/system none`` clear the setting:
  `Command.clear` is True and `Command.value` is None. Any other ``/system`` text sets the
  system prompt verbatim (surrounding blanks stripped).
* ``/save`` and ``/batch`` take the rest of the line as a path (spaces allowed; one pair of
  surrounding quotes is removed; ``~`` is *not* expanded here).
* ``/save`` never replaces an existing file; ``/save! path`` does (a ``!`` right after
  the name, as in vi's ``:w!``; `Command.force` is True). No other command takes ``!``.
* ``/help`` accepts an optional command name (``/help temp`` or ``/help /temp``); the
  value is then the canonical name.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from .errors import SwamlaError
from .params import RANGES

__all__ = [
    "COMMANDS",
    "Command",
    "CommandError",
    "CommandSpec",
    "SEED_MAX",
    "complete",
    "is_command",
    "literal_text",
    "lookup",
    "parse_command",
]

# Largest seed accepted: fits a signed 64-bit integer, which every RNG we use accepts.
SEED_MAX = 2**63 - 1

# Words that clear an optional setting (/seed, /system).
_CLEAR_WORDS = frozenset({"off", "none"})
# Values of an on/off command (/markdown).
_SWITCH_WORDS = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}

_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT_RE = re.compile(r"[+-]?\d+", re.ASCII)

# Longest piece of user input quoted back in an error message.
_QUOTE_MAX = 40


class CommandError(SwamlaError):
    """A slash command could not be parsed; `str(err)` is a one-line message."""


@dataclass(frozen=True)
class CommandSpec:
    """What the help screen and autocompletion need to know about one command."""

    name: str
    """Canonical name without the slash, e.g. ``"temp"``."""
    args: str
    """Argument synopsis for the help screen, e.g. ``"[value]"``; empty when none."""
    help: str
    """One-line description."""
    kind: str
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
        "undo", "", "Back to the reply's previous branch, else drop the last exchange", "none"
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
        "Save the conversation (.md or .json; default: the data folder); "
        "/save! path replaces an existing file",
        "opt_path",
        force=True,
    ),
    CommandSpec("info", "", "Show the model card", "none"),
    CommandSpec("copy", "", "Copy the last reply to the clipboard", "none"),
    CommandSpec(
        "markdown", "[on|off]", "Show replies as Markdown or raw text (remembered)", "switch"
    ),
    CommandSpec("probs", "[on|off]", "Colour reply tokens by probability (remembered)", "switch"),
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
)

_BY_NAME: dict[str, CommandSpec] = {}
for _spec in COMMANDS:
    for _key in (_spec.name, *_spec.aliases):
        _BY_NAME[_key] = _spec


@dataclass(frozen=True)
class Command:
    """One parsed slash command.

    `value` is already validated and typed: float for /temp, /topp, /reppen; int for
    /topk, /max, /seed; bool for /markdown; str for /system, /save, /batch and /help; None
    when the command
    takes no value, shows the current value, toggles (/markdown) or clears a setting.
    """

    name: str
    """Canonical name without the slash (aliases are resolved)."""
    value: float | int | str | None = None
    args: str = ""
    """The raw argument text as typed, surrounding blanks stripped."""
    clear: bool = False
    """True for ``/seed off`` and ``/system off``."""
    force: bool = False
    """True for ``/save! path`` (replace an existing file)."""

    @property
    def spec(self) -> CommandSpec:
        return _BY_NAME[self.name]

    @property
    def param(self) -> str | None:
        """The `SamplingParams` field this command reads or sets (None if not a parameter)."""
        return self.spec.param

    @property
    def shows(self) -> bool:
        """True when the user asked to *see* a setting rather than change it."""
        return self.spec.kind in {"float", "int", "max", "seed", "text"} and (
            self.value is None and not self.clear
        )


def is_command(line: str) -> bool:
    """Whether `line` is a slash command (``//`` escapes a literal leading slash)."""
    text = line.lstrip()
    return text.startswith("/") and not text.startswith("//")


def literal_text(line: str) -> str:
    """The message to send for a non-command line: ``//x`` becomes ``/x``."""
    stripped = line.lstrip()
    if stripped.startswith("//"):
        return stripped[1:]
    return line


def lookup(name: str) -> CommandSpec | None:
    """The spec for a command name or alias (with or without the slash), else None."""
    key = name.strip().lower().removeprefix("/")
    return _BY_NAME.get(key)


def _quote(text: str) -> str:
    """Quote user input for an error message: shortened, never spanning lines."""
    if len(text) > _QUOTE_MAX:
        text = text[: _QUOTE_MAX - 1] + "…"
    return repr(text)


def _plain(text: str) -> str:
    """User text shown unquoted (a command name) but kept on one line."""
    if len(text) > _QUOTE_MAX:
        text = text[: _QUOTE_MAX - 1] + "…"
    return text if text.isprintable() else repr(text)[1:-1]


def _fmt(x: float) -> str:
    return f"{x:g}"


def _suggest(name: str) -> str | None:
    """The nearest command name, for the "did you mean" hint."""
    names = [spec.name for spec in COMMANDS]
    starts = [n for n in names if n.startswith(name)] if name else []
    if len(starts) == 1:
        return starts[0]
    close = difflib.get_close_matches(name, list(_BY_NAME), n=1, cutoff=0.6)
    if close:
        return _BY_NAME[close[0]].name
    return None


def _unknown(name: str) -> CommandError:
    shown = _plain(name)
    best = _suggest(name)
    if best is not None:
        return CommandError(f"Unknown command /{shown} — did you mean /{best}?")
    return CommandError(f"Unknown command /{shown} — type /help to list the commands")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1].strip()
    return text


def _parse_float(spec: CommandSpec, args: str) -> float:
    assert spec.param is not None
    lo, hi = RANGES[spec.param]
    expected = f"/{spec.name} expects a number between {_fmt(lo)} and {_fmt(hi)}"
    if not _FLOAT_RE.fullmatch(args):
        raise CommandError(f"{expected}, got {_quote(args)}")
    value = float(args)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CommandError(f"{expected}, got {_quote(args)}")
    return value


def _parse_int(spec: CommandSpec, args: str, lo: int, hi: int, note: str = "") -> int:
    expected = f"/{spec.name} expects a whole number between {lo} and {hi}{note}"
    # More digits than the bound has is out of range: checked before int(), which raises
    # ValueError past 4,300 digits (Python's int-string limit).
    digits = args.lstrip("+-").lstrip("0")
    if not _INT_RE.fullmatch(args) or len(digits) > len(str(max(abs(lo), abs(hi)))):
        raise CommandError(f"{expected}, got {_quote(args)}")
    value = int(digits or "0") * (-1 if args.startswith("-") else 1)
    if not lo <= value <= hi:
        raise CommandError(f"{expected}, got {_quote(args)}")
    return value


def parse_command(line: str, *, max_new_tokens_limit: int = 2048) -> Command:
    """Parse one input line into a validated `Command`.

    `max_new_tokens_limit` is the upper bound for ``/max`` (the loaded model's context
    length, typically). Raises `CommandError` for anything that is not a valid command.
    """
    if not is_command(line):
        raise CommandError("Not a command: commands start with / (type /help for the list)")
    body = line.strip()[1:]
    parts = body.split(None, 1)
    if not parts:
        raise CommandError("Type a command name after / — /help lists them")
    raw_name = parts[0]
    args = parts[1].strip() if len(parts) > 1 else ""
    force = len(raw_name) > 1 and raw_name.endswith("!")
    key = raw_name.lower().removesuffix("!") if force else raw_name.lower()
    spec = _BY_NAME.get(key)
    if spec is None:
        raise _unknown(key)
    name = spec.name
    kind = spec.kind
    if force and not spec.force:
        raise CommandError(f"/{name} takes no '!' (only /save! does: it replaces a file)")

    if kind == "none":
        if args:
            raise CommandError(f"/{name} takes no arguments, got {_quote(args)}")
        return Command(name)

    if kind == "help":
        if not args:
            return Command(name)
        target = lookup(args)
        if target is None:
            raise _unknown(args.lower().removeprefix("/"))
        return Command(name, target.name, args)

    if not args:
        if kind == "path":
            raise CommandError(f"/{name} expects a file path: {spec.usage}")
        return Command(name, None, "")

    if kind == "float":
        return Command(name, _parse_float(spec, args), args)

    if kind == "int":
        assert spec.param is not None
        lo, hi = RANGES[spec.param]
        value = _parse_int(spec, args, int(lo), int(hi), " (0 disables it)")
        return Command(name, value, args)

    if kind == "max":
        lo = int(RANGES["max_new_tokens"][0])
        hi = max(lo, int(max_new_tokens_limit))
        return Command(name, _parse_int(spec, args, lo, hi), args)

    if kind == "seed":
        if args.lower() in _CLEAR_WORDS:
            return Command(name, None, args, clear=True)
        return Command(name, _parse_int(spec, args, 0, SEED_MAX, " or 'off'"), args)

    if kind == "switch":
        word = args.lower()
        if word not in _SWITCH_WORDS:
            raise CommandError(f"/{name} expects on or off, got {_quote(args)}")
        return Command(name, _SWITCH_WORDS[word], args)

    if kind == "text":
        if args.lower() in _CLEAR_WORDS:
            return Command(name, None, args, clear=True)
        return Command(name, args, args)

    # kind in {"path", "opt_path"}
    path = _unquote(args)
    if not path:
        raise CommandError(f"/{name} expects a file path: {spec.usage}")
    return Command(name, path, args, force=force)


def complete(prefix: str) -> list[str]:
    """Suggestions (whole input lines) for what the user has typed so far.

    ``"/t"`` -> ``["/temp", "/topk", "/topp"]``; ``"/help t"`` -> ``["/help temp", ...]``;
    ``"/seed o"`` -> ``["/seed off"]``. Lines that are not commands get no suggestions.
    """
    if not is_command(prefix):
        return []
    body = prefix.lstrip()[1:]
    if not any(ch.isspace() for ch in body):
        token = body.lower()
        return [f"/{spec.name}" for spec in COMMANDS if spec.name.startswith(token)]
    parts = body.split(None, 1)
    if not parts:
        return []
    spec = _BY_NAME.get(parts[0].lower())
    rest = parts[1] if len(parts) > 1 else ""
    if spec is None or any(ch.isspace() for ch in rest):
        return []
    token = rest.lower()
    if spec.kind == "help":
        token = token.removeprefix("/")
        return [f"/{spec.name} {s.name}" for s in COMMANDS if s.name.startswith(token)]
    if spec.kind in {"seed", "text"} and token and "off".startswith(token):
        return [f"/{spec.name} off"]
    if spec.kind == "switch":
        return [f"/{spec.name} {w}" for w in ("on", "off") if w.startswith(token)]
    return []
