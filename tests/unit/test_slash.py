"""Slash commands against a plain fake of `SlashPort` (no Textual app): what each command
changes and the one line it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest

from swamla_tui.base.params import SamplingParams
from swamla_tui.base.timings import ReplyTimings
from swamla_tui.chat.commands.table import COMMANDS
from swamla_tui.chat.session import ChatSession
from swamla_tui.chat.transcript import TranscriptStore
from swamla_tui.protocols import Model
from swamla_tui.ui.chat.slash import SlashCommands
from tests.support.fakes import FakeLM


def chat_only_lm() -> Model | None:
    """The commands use only the chat half of `Model`; the chat fake has no batch half."""
    return cast(Model, FakeLM())


@dataclass
class FakePort:
    """The chat as the commands see it; records what they asked for."""

    session: ChatSession
    lm: Model | None = field(default_factory=chat_only_lm)
    load_failed: str | None = None
    model_source: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    markdown: bool = False
    last_timings: ReplyTimings | None = None
    generating: bool = False
    notices: list[tuple[str, bool]] = field(default_factory=list)
    calls: list[tuple[object, ...]] = field(default_factory=list)

    def add_notice(self, text: str, *, error: bool = False) -> object:
        self.notices.append((text, error))
        return None

    def busy(self) -> bool:
        if self.generating:
            self.notices.append(("busy", False))
        return self.generating

    def set_param(self, name: str, value: object) -> None:
        setattr(self.params, name, value)
        self.calls.append(("set_param", name, value))

    def __getattr__(self, name: str):  # the chat's actions: recorded, nothing else
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *a, **k: self.calls.append((name, *a, *sorted(k.items())))


@dataclass
class FakeTools:
    calls: list[tuple[object, ...]] = field(default_factory=list)
    branch_undone: bool = False

    def start_perplexity(self, path: str) -> None:
        self.calls.append(("ppl", path))

    def compare_last(self, path: str | None) -> None:
        self.calls.append(("compare", path))

    def set_probs(self, on: bool | None) -> None:
        self.calls.append(("probs", on))

    def undo_branch(self) -> bool:
        return self.branch_undone

    def show_experts(self) -> None:
        self.calls.append(("experts",))


@pytest.fixture
def chat(tmp_path):
    port = FakePort(ChatSession(TranscriptStore(tmp_path / "t")))
    tools = FakeTools()
    return port, tools, SlashCommands(port, tools)


def test_every_slash_command_has_a_handler(chat):
    assert {spec.name for spec in COMMANDS} == set(chat[2]._handlers)


def test_bad_value_is_one_error_line_and_nothing_changes(chat):
    port, _, slash = chat
    before = port.params.temperature
    slash.run("/temp banana")
    assert port.params.temperature == before and not port.calls
    ((text, error),) = port.notices
    assert error and "banana" in text and "\n" not in text


def test_value_sets_and_shows(chat):
    port, _, slash = chat
    slash.run("/temp 0.5")
    assert port.calls == [("set_param", "temperature", 0.5)]
    assert port.notices[-1] == ("temp set to 0.5", False)
    slash.run("/temp")
    assert port.notices[-1][0].startswith("temp = 0.5  (range 0")


def test_max_tokens_are_bounded_by_the_model_context(chat):
    port, _, slash = chat
    port.lm.max_length = 64
    slash.run("/max 65")
    assert port.notices[-1][1] and not port.calls
    slash.run("/max 64")
    assert port.calls == [("set_param", "max_new_tokens", 64)]


def test_seed_set_show_and_off(chat):
    port, _, slash = chat
    slash.run("/seed 7")
    slash.run("/seed")
    assert port.notices[-1] == ("seed = 7", False)
    slash.run("/seed off")
    assert port.params.seed is None and port.notices[-1] == ("seed off", False)


def test_undo_with_nothing_and_while_busy(chat):
    port, tools, slash = chat
    slash.run("/undo")
    assert port.notices[-1] == ("Nothing to undo.", True)
    port.generating = True
    slash.run("/undo")
    assert port.notices[-1] == ("busy", False)
    port.generating, tools.branch_undone = False, True
    n = len(port.notices)
    slash.run("/undo")  # the inspector undid a branch: nothing else happens
    assert len(port.notices) == n and not port.calls


def test_system_prompt_set_and_cleared_but_not_while_busy(chat):
    port, _, slash = chat
    slash.run("/system be brief")
    assert port.session.conversation.system == "be brief"
    assert ("update_context",) in port.calls
    port.generating = True
    slash.run("/system other")
    assert port.session.conversation.system == "be brief"
    port.generating = False
    slash.run("/system off")
    assert not port.session.conversation.system


def test_tools_and_actions_get_their_arguments(chat):
    port, tools, slash = chat
    slash.run("/ppl notes.txt")
    slash.run("/compare other.pt")
    slash.run("/compare")
    slash.run("/probs on")
    slash.run("/experts")
    assert tools.calls == [
        ("ppl", "notes.txt"),
        ("compare", "other.pt"),
        ("compare", None),
        ("probs", True),
        ("experts",),
    ]
    slash.run("/batch prompts.txt")
    slash.run("/quit")
    assert ("open_batch", "prompts.txt") in port.calls and ("quit_app",) in port.calls


def test_copy_and_info_without_a_model(chat):
    port, _, slash = chat
    slash.run("/copy")
    assert port.notices[-1] == ("No reply to copy yet.", False)
    port.lm = None
    slash.run("/info")
    assert port.notices[-1] == ("The model is still loading.", False)
    port.model_source = "/models/ckpt.pt"
    slash.run("/info")
    assert port.notices[-1] == ("The model is still loading: /models/ckpt.pt.", False)
    port.load_failed = "tokenizer 'gpt2' is not available locally"
    slash.run("/info")
    text, error = port.notices[-1]
    assert not error and text.splitlines() == [
        "model  not loaded",
        "tried  /models/ckpt.pt",
        "error  tokenizer 'gpt2' is not available locally",
        "next   Ctrl+Q quits; start again with another checkpoint",
    ]


def test_stats_shows_the_last_replys_timings(chat):
    port, _, commands = chat
    commands.run("/stats")
    assert port.notices[-1] == ("No reply yet: /stats shows the last reply's timings.", False)
    port.last_timings = ReplyTimings(
        prompt_tokens=120, cached_tokens=100, prefill_s=0.05, ttft_s=0.06,
        generated_tokens=11, decode_s=0.5, load_s=1.25,
    )  # fmt: skip
    commands.run("/stats")
    text, error = port.notices[-1]
    assert not error
    lines = dict(line.split("  ", 1) for line in text.splitlines())
    assert lines["load duration"].strip() == "1.25s"
    assert lines["prompt eval count"].strip() == "120 token(s) (100 reused from the last turn)"
    assert lines["prompt eval rate"].strip() == "400.00 tokens/s"  # 20 prefilled in 0.05 s
    assert lines["time to first token"].strip() == "60.0ms"
    assert lines["eval rate"].strip() == "20.00 tokens/s"  # 10 after the first in 0.5 s
