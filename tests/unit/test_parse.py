"""Tests for the slash-command parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swamla_tui.base.errors import SwamlaError
from swamla_tui.base.params import RANGES, SamplingParams
from swamla_tui.chat.commands.parse import (
    COMMANDS,
    SEED_MAX,
    Command,
    CommandError,
    complete,
    is_command,
    literal_text,
    lookup,
    parse_command,
)


def error_of(line: str, **kwargs: int) -> str:
    with pytest.raises(CommandError) as info:
        parse_command(line, **kwargs)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    return message


# -- recognising commands ---------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("/quit", True),
        ("  /temp 0.5", True),
        ("/", True),
        ("hello", False),
        ("", False),
        ("   ", False),
        ("//etc/passwd is a file", False),
        ("a /quit", False),
    ],
)
def test_is_command(line: str, expected: bool) -> None:
    assert is_command(line) is expected


def test_literal_text_unescapes_double_slash() -> None:
    assert literal_text("//etc is a folder") == "/etc is a folder"
    assert literal_text("  //x") == "/x"
    assert literal_text("plain text") == "plain text"
    assert literal_text("  keep spaces") == "  keep spaces"


def test_command_error_is_swamla_error() -> None:
    assert issubclass(CommandError, SwamlaError)


def test_not_a_command_raises_command_error() -> None:
    assert "start with /" in error_of("hello")
    assert "start with /" in error_of("//hello")


def test_lone_slash() -> None:
    assert "/help" in error_of("/")
    assert "/help" in error_of("/   ")


# -- commands without arguments ---------------------------------------------------------


@pytest.mark.parametrize("name", ["quit", "exit", "clear", "retry", "undo", "info", "help"])
def test_simple_commands(name: str) -> None:
    cmd = parse_command(f"/{name}")
    assert cmd == Command(name)
    assert cmd.value is None
    assert not cmd.shows
    assert cmd.param is None


@pytest.mark.parametrize("name", ["quit", "exit", "clear", "retry", "undo", "info"])
def test_simple_commands_reject_arguments(name: str) -> None:
    assert error_of(f"/{name} now") == f"/{name} takes no arguments, got 'now'"


def test_names_are_case_insensitive_and_blanks_ignored() -> None:
    assert parse_command("  /QUIT  ").name == "quit"
    assert parse_command("/Temp   0.5  ") == Command("temp", 0.5, "0.5")
    assert parse_command("/temp\t0.5").value == 0.5


def test_aliases_resolve_to_canonical_names() -> None:
    assert parse_command("/q").name == "quit"
    assert parse_command("/?").name == "help"
    assert parse_command("/temperature 1").name == "temp"
    assert parse_command("/top_k 3").name == "topk"
    assert parse_command("/top_p 0.5").name == "topp"
    assert parse_command("/repetition_penalty 1.2").name == "reppen"
    assert parse_command("/max_new_tokens 12").name == "max"


# -- /help ------------------------------------------------------------------------------


def test_help_with_topic() -> None:
    assert parse_command("/help temp") == Command("help", "temp", "temp")
    assert parse_command("/help /TEMP").value == "temp"
    assert parse_command("/help temperature").value == "temp"


def test_help_with_unknown_topic() -> None:
    assert error_of("/help tmp") == "Unknown command /tmp — did you mean /temp?"


# -- float parameters -------------------------------------------------------------------

FLOAT_COMMANDS = {"temp": "temperature", "topp": "top_p", "reppen": "repetition_penalty"}


@pytest.mark.parametrize("name, param", FLOAT_COMMANDS.items())
def test_float_commands_accept_range_ends_and_middle(name: str, param: str) -> None:
    lo, hi = RANGES[param]
    for value in (lo, hi, (lo + hi) / 2):
        cmd = parse_command(f"/{name} {value}")
        assert cmd.value == pytest.approx(value)
        assert isinstance(cmd.value, float)
        assert cmd.param == param
        assert not cmd.shows


@pytest.mark.parametrize("name", FLOAT_COMMANDS)
def test_float_commands_without_value_show(name: str) -> None:
    cmd = parse_command(f"/{name}")
    assert cmd.value is None
    assert cmd.shows


@pytest.mark.parametrize(
    "text, expected",
    [("1", 1.0), ("0.25", 0.25), (".5", 0.5), ("1.", 1.0), ("+1.5", 1.5), ("1e0", 1.0)],
)
def test_temp_number_spellings(text: str, expected: float) -> None:
    assert parse_command(f"/temp {text}").value == expected


def test_temp_error_message_names_range() -> None:
    assert error_of("/temp banana") == "/temp expects a number between 0 and 2, got 'banana'"


@pytest.mark.parametrize("name, param", FLOAT_COMMANDS.items())
@pytest.mark.parametrize(
    "bad", ["banana", "nan", "NaN", "inf", "-inf", "1e999", "1_0", "0x1", "1,5", "½", "١", "1 2"]
)
def test_float_commands_reject_non_numbers(name: str, param: str, bad: str) -> None:
    lo, hi = RANGES[param]
    message = error_of(f"/{name} {bad}")
    assert message.startswith(f"/{name} expects a number between {lo:g} and {hi:g}, got ")
    assert repr(bad) in message


@pytest.mark.parametrize(
    "line", ["/temp -0.1", "/temp 2.01", "/topp 1.5", "/topp -1", "/reppen 0.99", "/reppen 3"]
)
def test_float_commands_reject_out_of_range(line: str) -> None:
    assert "expects a number between" in error_of(line)


# -- /topk --------------------------------------------------------------------------------


def test_topk_values() -> None:
    assert parse_command("/topk 0") == Command("topk", 0, "0")
    assert parse_command("/topk 200").value == 200
    assert isinstance(parse_command("/topk 50").value, int)
    assert parse_command("/topk").shows
    assert parse_command("/topk 5").param == "top_k"


@pytest.mark.parametrize("bad", ["5.5", "5.0", "1e2", "-1", "201", "ten", "nan"])
def test_topk_rejects(bad: str) -> None:
    message = error_of(f"/topk {bad}")
    assert message == (
        f"/topk expects a whole number between 0 and 200 (0 disables it), got {bad!r}"
    )


# -- /max -------------------------------------------------------------------------------


def test_max_values_and_limit() -> None:
    assert parse_command("/max 1").value == 1
    assert parse_command("/max 2048").value == 2048
    assert parse_command("/max 100", max_new_tokens_limit=100).value == 100
    assert parse_command("/max").shows
    assert parse_command("/max 5").param == "max_new_tokens"


def test_max_upper_bound_is_the_limit_argument() -> None:
    assert error_of("/max 101", max_new_tokens_limit=100) == (
        "/max expects a whole number between 1 and 100, got '101'"
    )
    assert parse_command("/max 4096", max_new_tokens_limit=8192).value == 4096
    assert "between 1 and 2048" in error_of("/max 2049")


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "many", "inf"])
def test_max_rejects(bad: str) -> None:
    assert "/max expects a whole number between 1 and" in error_of(f"/max {bad}")


# -- /seed ------------------------------------------------------------------------------


def test_seed_values() -> None:
    assert parse_command("/seed 42") == Command("seed", 42, "42")
    assert parse_command("/seed 0").value == 0
    assert parse_command(f"/seed {SEED_MAX}").value == SEED_MAX
    assert parse_command("/seed 1").param == "seed"


def test_seed_show_and_clear() -> None:
    show = parse_command("/seed")
    assert show.shows and not show.clear and show.value is None
    for word in ("off", "none", "OFF", "None"):
        cmd = parse_command(f"/seed {word}")
        assert cmd.clear and cmd.value is None and not cmd.shows


@pytest.mark.parametrize("bad", ["-1", "1.5", "abc", str(SEED_MAX + 1), "nan"])
def test_seed_rejects(bad: str) -> None:
    message = error_of(f"/seed {bad}")
    assert message.startswith(f"/seed expects a whole number between 0 and {SEED_MAX} or 'off'")


# -- /system ----------------------------------------------------------------------------


def test_system_set_show_clear() -> None:
    cmd = parse_command("/system   You are a helpful pirate.  ")
    assert cmd == Command("system", "You are a helpful pirate.", "You are a helpful pirate.")
    show = parse_command("/system")
    assert show.shows and show.value is None
    off = parse_command("/system off")
    assert off.clear and off.value is None and not off.shows
    assert parse_command("/system None").clear
    # Only the exact clear words clear; longer text is a prompt.
    assert parse_command("/system off topic answers").value == "off topic answers"


# -- /save and /batch ---------------------------------------------------------------------


def test_save_with_and_without_path() -> None:
    assert parse_command("/save") == Command("save", None, "")
    assert parse_command("/save chat.md").value == "chat.md"
    assert parse_command("/save my chat.json").value == "my chat.json"
    assert parse_command('/save "my chat.md"').value == "my chat.md"
    assert parse_command("/save 'a.md'").value == "a.md"
    assert parse_command("/save ~/x.md").value == "~/x.md"
    assert not parse_command("/save").shows


def test_save_rejects_empty_quotes() -> None:
    assert "/save expects a file path" in error_of('/save ""')


def test_batch_requires_path() -> None:
    assert parse_command("/batch prompts.txt") == Command("batch", "prompts.txt", "prompts.txt")
    assert parse_command('/batch "my prompts.txt"').value == "my prompts.txt"
    assert error_of("/batch") == "/batch expects a file path: /batch <file>"
    assert "/batch expects a file path" in error_of("/batch ''")


# -- unknown commands -------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed, suggestion",
    [
        ("tmp", "temp"),
        ("tempp", "temp"),
        ("qiut", "quit"),
        ("sytem", "system"),
        ("cl", "clear"),
        ("topkk", "topk"),
        ("undp", "undo"),
        ("batc", "batch"),
    ],
)
def test_unknown_command_suggests_nearest(typed: str, suggestion: str) -> None:
    assert error_of(f"/{typed}") == f"Unknown command /{typed} — did you mean /{suggestion}?"


def test_unknown_command_without_suggestion() -> None:
    assert error_of("/xyzzy") == "Unknown command /xyzzy — type /help to list the commands"


def test_prefixes_are_not_accepted() -> None:
    # Even unambiguous prefixes: a typo must never run /clear.
    assert "did you mean /clear?" in error_of("/cle")
    assert "did you mean /info?" in error_of("/inf")


def test_unknown_command_with_control_characters_stays_one_line() -> None:
    message = error_of("/\x00\x1b[2J")
    assert "\x00" not in message and "\x1b" not in message


def test_long_input_is_shortened_in_messages() -> None:
    message = error_of("/temp " + "x" * 500)
    assert len(message) < 120


# -- metadata and completion ------------------------------------------------------------


def test_commands_metadata() -> None:
    names = [spec.name for spec in COMMANDS]
    assert len(names) == len(set(names))
    required = {"quit", "exit", "clear", "help", "temp", "topk", "topp", "reppen", "max"}
    required |= {"seed", "system", "retry", "undo", "save", "info", "batch"}
    assert required <= set(names)
    fields = set(SamplingParams().as_dict())
    for spec in COMMANDS:
        assert spec.help and "\n" not in spec.help
        assert spec.usage.startswith("/" + spec.name)
        if spec.param is not None:
            assert spec.param in fields
    assert lookup("temp") is lookup("/TEMPERATURE")
    assert lookup("nope") is None
    assert (batch := lookup("batch")) is not None and batch.usage == "/batch <file>"


def test_every_command_parses_without_arguments_or_explains() -> None:
    for spec in COMMANDS:
        try:
            cmd = parse_command(f"/{spec.name}")
        except CommandError as err:
            assert spec.usage in str(err)
        else:
            assert cmd.name == spec.name


def test_complete_names() -> None:
    assert complete("/t") == ["/temp", "/topk", "/topp"]
    assert complete("/T") == ["/temp", "/topk", "/topp"]
    assert complete("/temp") == ["/temp"]
    assert complete("/zz") == []
    assert complete("/") == [f"/{spec.name}" for spec in COMMANDS]
    assert complete("hello") == []
    assert complete("") == []
    assert complete("//t") == []


def test_complete_arguments() -> None:
    assert complete("/help t") == ["/help temp", "/help topk", "/help topp"]
    assert complete("/help /q") == ["/help quit"]
    assert len(complete("/help ")) == len(COMMANDS)
    assert complete("/seed o") == ["/seed off"]
    assert complete("/system of") == ["/system off"]
    assert complete("/seed 4") == []
    assert complete("/temp 0") == []
    assert complete("/nope x") == []
    assert complete("/ ") == []


def test_completions_parse() -> None:
    for prefix in ["/", "/help ", "/seed o", "/system o"]:
        for line in complete(prefix):
            try:
                parse_command(line)
            except CommandError as err:
                # Only /batch and /ppl need an argument the completer cannot guess.
                assert line in ("/batch", "/ppl"), err


# -- properties -------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_parse_never_raises_anything_but_command_error(text: str) -> None:
    for line in (text, "/" + text):
        try:
            cmd = parse_command(line)
        except CommandError as err:
            assert len(str(err).splitlines()) == 1
        else:
            assert isinstance(cmd, Command)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([f"/{spec.name}" for spec in COMMANDS]),
    st.text(),
    st.integers(min_value=-5, max_value=10_000),
)
def test_parse_with_arguments_never_raises_anything_else(name: str, args: str, limit: int) -> None:
    try:
        cmd = parse_command(f"{name} {args}", max_new_tokens_limit=limit)
    except CommandError as err:
        assert len(str(err).splitlines()) == 1
    else:
        assert cmd.name == name[1:]


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.0, max_value=2.0, allow_nan=False))
def test_any_in_range_temperature_round_trips(value: float) -> None:
    assert parse_command(f"/temp {value!r}").value == value


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_complete_never_raises(text: str) -> None:
    for line in (text, "/" + text):
        assert all(s.startswith("/") for s in complete(line))
