"""Slash-command parser for the chat input (pure Python: no torch, no textual).

The command table lives in `command_table.py` and the value parsers in `command_values.py`;
this module dispatches on a line and re-exports the public names of both.

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
from dataclasses import dataclass

from ...base.params import RANGES
from .table import BY_NAME, COMMANDS, CommandSpec, lookup
from .values import (
    CLEAR_WORDS,
    SEED_MAX,
    SWITCH_WORDS,
    CommandError,
    parse_float,
    parse_int,
    plain,
    quote,
    unquote,
)

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
        return BY_NAME[self.name]

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


def _suggest(name: str) -> str | None:
    """The nearest command name, for the "did you mean" hint."""
    names = [spec.name for spec in COMMANDS]
    starts = [n for n in names if n.startswith(name)] if name else []
    if len(starts) == 1:
        return starts[0]
    close = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.6)
    if close:
        return BY_NAME[close[0]].name
    return None


def _unknown(name: str) -> CommandError:
    shown = plain(name)
    best = _suggest(name)
    if best is not None:
        return CommandError(f"Unknown command /{shown} — did you mean /{best}?")
    return CommandError(f"Unknown command /{shown} — type /help to list the commands")


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
    spec = BY_NAME.get(key)
    if spec is None:
        raise _unknown(key)
    name = spec.name
    kind = spec.kind
    if force and not spec.force:
        raise CommandError(f"/{name} takes no '!' (only /save! does: it replaces a file)")

    if kind == "none":
        if args:
            raise CommandError(f"/{name} takes no arguments, got {quote(args)}")
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
        return Command(name, parse_float(spec, args), args)

    if kind == "int":
        assert spec.param is not None
        lo, hi = RANGES[spec.param]
        value = parse_int(spec, args, int(lo), int(hi), " (0 disables it)")
        return Command(name, value, args)

    if kind == "max":
        lo = int(RANGES["max_new_tokens"][0])
        hi = max(lo, int(max_new_tokens_limit))
        return Command(name, parse_int(spec, args, lo, hi), args)

    if kind == "seed":
        if args.lower() in CLEAR_WORDS:
            return Command(name, None, args, clear=True)
        return Command(name, parse_int(spec, args, 0, SEED_MAX, " or 'off'"), args)

    if kind == "switch":
        word = args.lower()
        if word not in SWITCH_WORDS:
            raise CommandError(f"/{name} expects on or off, got {quote(args)}")
        return Command(name, SWITCH_WORDS[word], args)

    if kind == "text":
        if args.lower() in CLEAR_WORDS:
            return Command(name, None, args, clear=True)
        return Command(name, args, args)

    # kind in {"path", "opt_path"}
    path = unquote(args)
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
    spec = BY_NAME.get(parts[0].lower())
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
