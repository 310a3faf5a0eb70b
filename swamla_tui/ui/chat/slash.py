"""The chat screen's slash commands: parse (`swamla_tui.chat.commands.parse`), then act.

Every `COMMANDS` entry has a ``_cmd_<name>`` handler here. Handlers see the chat through
`SlashPort`, a narrow Protocol (the model, the params, the session, notices and the chat's
actions), never the whole App, so their behaviour is unit-tested with a plain fake
(tests/unit/test_slash.py) and the chat screen keeps to layout and the reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ...base.errors import one_line
from ...base.params import PARAM_SPECS, RANGES, SamplingParams
from ...base.timings import ReplyTimings
from ...chat.commands import parse as cmds
from ...chat.session import ChatSession, count_noun
from ...protocols import Model

__all__ = ["SlashCommands", "SlashPort"]


class SlashPort(Protocol):
    """What the slash commands need from the chat (`ChatScreen` provides it)."""

    @property
    def lm(self) -> Model | None: ...
    @property
    def load_failed(self) -> str | None: ...
    @property
    def model_source(self) -> str | None: ...
    @property
    def params(self) -> SamplingParams: ...
    @property
    def session(self) -> ChatSession: ...
    @property
    def markdown(self) -> bool: ...
    @property
    def last_timings(self) -> ReplyTimings | None: ...

    def add_notice(self, text: str, *, error: bool = False) -> object: ...
    def busy(self) -> bool: ...
    def set_param(self, name: str, value: object) -> None: ...
    def update_context(self) -> None: ...
    def remove_last_turn_widgets(self) -> None: ...
    def set_markdown(self, on: bool) -> None: ...
    def copy_to_clipboard(self, text: str) -> None: ...
    def save(self, path: str | None, *, overwrite: bool = False) -> None: ...
    def open_batch(self, path: str | None = None, *, batch_size: int | None = None) -> None: ...
    def quit_app(self) -> None: ...
    def action_help(self) -> None: ...
    def action_clear(self) -> None: ...
    def action_retry(self) -> None: ...
    def action_conversations(self) -> None: ...
    def switch_model(self, source: str | None) -> None: ...
    def reset_params(self) -> None: ...
    def restore_input(self, text: str) -> None: ...


class ChatTools(Protocol):
    """The chat's other helpers a command starts: /ppl, /compare, /probs, /undo of a branch."""

    def start_perplexity(self, path: str) -> None: ...
    def compare_last(self, path: str | None) -> None: ...
    def set_probs(self, on: bool | None) -> None: ...
    def undo_branch(self) -> bool: ...
    def show_experts(self) -> None: ...


def fmt_value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class SlashCommands:
    """Runs one typed command line against the chat (`chat`: a `SlashPort`)."""

    def __init__(self, chat: SlashPort, tools: ChatTools) -> None:
        self.chat = chat
        self.tools = tools
        self._handlers: dict[str, Callable[[cmds.Command], None]] = {
            "help": self._cmd_help,
            "quit": self._cmd_quit,
            "exit": self._cmd_quit,
            "clear": lambda c: chat.action_clear(),
            "retry": lambda c: chat.action_retry(),
            "undo": self._cmd_undo,
            "conversations": lambda c: chat.action_conversations(),
            "model": lambda c: chat.switch_model(str(c.value) if c.value else None),
            "defaults": lambda c: chat.reset_params(),
            "temp": self._value,
            "topk": self._value,
            "topp": self._value,
            "reppen": self._value,
            "max": self._value,
            "seed": self._cmd_seed,
            "system": self._cmd_system,
            "save": lambda c: chat.save(str(c.value) if c.value else None, overwrite=c.force),
            "info": self._cmd_info,
            "stats": self._cmd_stats,
            "batch": lambda c: chat.open_batch(str(c.value) if c.value else None),
            "copy": self._cmd_copy,
            "markdown": self._cmd_markdown,
            "ppl": lambda c: tools.start_perplexity(str(c.value)),
            "compare": lambda c: tools.compare_last(str(c.value) if c.value else None),
            "probs": lambda c: tools.set_probs(None if c.value is None else bool(c.value)),
            "experts": lambda c: tools.show_experts(),
        }

    def run(self, line: str) -> None:
        chat = self.chat
        limit = int(chat.lm.max_length) if chat.lm is not None else int(RANGES["max_new_tokens"][1])
        try:
            command = cmds.parse_command(line, max_new_tokens_limit=limit)
        except cmds.CommandError as exc:
            chat.add_notice(str(exc), error=True)
            return
        self._handlers[command.name](command)

    def _cmd_quit(self, command: cmds.Command) -> None:
        self.chat.quit_app()

    def _cmd_help(self, command: cmds.Command) -> None:
        if command.value:
            spec = cmds.lookup(str(command.value))
            if spec is not None:
                self.chat.add_notice(f"{spec.usage} — {spec.help}")
                return
        self.chat.action_help()

    def _cmd_undo(self, command: cmds.Command) -> None:
        chat = self.chat
        if chat.busy() or self.tools.undo_branch():
            return
        turn = chat.session.undo()
        if turn is None:
            chat.add_notice("Nothing to undo.", error=True)
            return
        chat.remove_last_turn_widgets()
        chat.update_context()
        chat.restore_input(turn.user)
        chat.add_notice("Removed the last exchange: your message is back in the input.")

    def _value(self, command: cmds.Command) -> None:
        chat, name = self.chat, command.param
        assert name is not None
        label = command.spec.name
        if command.shows:
            spec = PARAM_SPECS[name]
            hi = chat.lm.max_length if name == "max_new_tokens" and chat.lm else spec.hi
            current = fmt_value(getattr(chat.params, name))
            chat.add_notice(f"{label} = {current}  (range {spec.lo:g}–{hi:g})")
            return
        chat.set_param(name, command.value)
        chat.add_notice(f"{label} set to {fmt_value(command.value)}")

    def _cmd_seed(self, command: cmds.Command) -> None:
        chat = self.chat
        if command.shows:
            seed = chat.params.seed
            chat.add_notice(f"seed = {'off' if seed is None else seed}")
            return
        chat.set_param("seed", None if command.clear else command.value)
        chat.add_notice("seed off" if command.clear else f"seed set to {command.value}")

    def _cmd_system(self, command: cmds.Command) -> None:
        chat = self.chat
        if command.shows:
            system = chat.session.conversation.system
            chat.add_notice(f"system prompt: {system!r}" if system else "system prompt: off")
            return
        if chat.busy():
            return
        chat.session.set_system(None if command.clear else str(command.value))
        chat.update_context()
        chat.add_notice("system prompt cleared" if command.clear else "system prompt set")

    def _cmd_copy(self, command: cmds.Command) -> None:
        """The last reply to the clipboard (OSC 52: most terminals, also over SSH)."""
        chat = self.chat
        turns = chat.session.conversation.turns
        if not turns or not turns[-1].assistant:
            chat.add_notice("No reply to copy yet.")
            return
        text = turns[-1].assistant
        chat.copy_to_clipboard(text)
        chat.add_notice(
            f"Copied the last reply to the clipboard ({count_noun(len(text), 'character')})."
        )

    def _cmd_markdown(self, command: cmds.Command) -> None:
        chat = self.chat
        on = (not chat.markdown) if command.value is None else bool(command.value)
        chat.set_markdown(on)
        chat.add_notice("Replies shown as Markdown." if on else "Replies shown as raw text.")

    def _cmd_info(self, command: cmds.Command) -> None:
        chat = self.chat
        if chat.lm is None:
            source = chat.model_source
            if chat.load_failed is None:
                chat.add_notice(f"The model is still loading{f': {source}' if source else ''}.")
                return
            card = {"model": "not loaded", "tried": source or "(not known)"}
            card |= {
                "error": chat.load_failed,
                "next": "Ctrl+Q quits; start again with another checkpoint",
            }
        else:
            try:
                card = chat.lm.card()
            except Exception as exc:  # noqa: BLE001 - a notice, the chat goes on
                chat.add_notice(f"No model card: {one_line(exc)}", error=True)
                return
        width = max((len(k) for k in card), default=0)
        chat.add_notice("\n".join(f"{k:<{width}}  {v}" for k, v in card.items()))

    def _cmd_stats(self, command: cmds.Command) -> None:
        timings = self.chat.last_timings
        if timings is None:
            self.chat.add_notice("No reply yet: /stats shows the last reply's timings.")
            return
        rows = timings.lines()
        width = max(len(k) for k, _ in rows)
        self.chat.add_notice("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
