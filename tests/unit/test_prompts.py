"""Tests for the prompts-file reader."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swamla_tui.base.errors import PromptsFileError, SwamlaError
from swamla_tui.batch.prompts import DEFAULT_PROMPTS, parse_prompts, read_prompts


def write(tmp_path: Path, data: bytes, name: str = "prompts.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def error_of(path: str | Path) -> str:
    with pytest.raises(PromptsFileError) as info:
        read_prompts(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    return message


def test_default_prompts_are_the_originals() -> None:
    assert DEFAULT_PROMPTS == (
        "Once upon a time, in a land far away,",
        "The future of artificial intelligence is",
        "In a world where technology has advanced beyond our wildest dreams,",
        "The most important lesson I learned was",
        "Science and magic are not as different as you might think.",
    )


def test_one_prompt_per_line_stripped_blanks_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, b"  first prompt  \n\n\t\nsecond\tprompt\t\n   \nthird")
    assert read_prompts(path) == ["first prompt", "second\tprompt", "third"]


def test_accepts_str_path(tmp_path: Path) -> None:
    path = write(tmp_path, b"a\n")
    assert read_prompts(str(path)) == ["a"]


def test_empty_and_blank_files(tmp_path: Path) -> None:
    assert read_prompts(write(tmp_path, b"")) == []
    assert read_prompts(write(tmp_path, b"\n \n\t\r\n")) == []


def test_line_endings(tmp_path: Path) -> None:
    assert read_prompts(write(tmp_path, b"a\r\nb\rc\nd\r\n")) == ["a", "b", "c", "d"]


def test_unicode_separators_stay_inside_a_prompt(tmp_path: Path) -> None:
    text = "one\u2028still one\x0cand\x1cmore\ntwo"
    assert read_prompts(write(tmp_path, text.encode())) == [
        "one\u2028still one\x0cand\x1cmore",
        "two",
    ]


def test_utf8_with_and_without_bom(tmp_path: Path) -> None:
    text = "Ça va ? 日本語 🎉\nnaïve\n"
    plain = write(tmp_path, text.encode("utf-8"), "plain.txt")
    bom = write(tmp_path, text.encode("utf-8-sig"), "bom.txt")
    expected = ["Ça va ? 日本語 🎉", "naïve"]
    assert read_prompts(plain) == expected
    assert read_prompts(bom) == expected


def test_bom_only_file(tmp_path: Path) -> None:
    assert read_prompts(write(tmp_path, b"\xef\xbb\xbf")) == []


def test_unicode_whitespace_is_stripped(tmp_path: Path) -> None:
    assert read_prompts(write(tmp_path, "\u00a0\u3000hello\u2003\n".encode())) == ["hello"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    assert error_of(path) == f"{path}: no such file"


def test_missing_file_message_uses_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert error_of("prompts.txt") == "prompts.txt: no such file"


def test_directory(tmp_path: Path) -> None:
    assert error_of(tmp_path) == f"{tmp_path}: is a directory, not a prompts file"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        # race: the path became a directory between the check and the open
        (IsADirectoryError(21, "Is a directory"), "is a directory, not a prompts file"),
        (PermissionError(13, "Permission denied"), "permission denied, cannot read it"),
    ],
    ids=["directory-at-open", "permission-denied"],
)
def test_open_error_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, says: str
) -> None:
    path = write(tmp_path, b"secret\n")

    def fake_open(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(builtins, "open", fake_open)
    assert error_of(path) == f"{path}: {says}"


def test_permission_denied_real(tmp_path: Path) -> None:
    path = write(tmp_path, b"secret\n")
    path.chmod(0)
    try:
        can_read = os.access(path, os.R_OK)
        if hasattr(os, "geteuid") and os.geteuid() == 0 and can_read:
            pytest.skip("running as root: chmod does not prevent reading")
        assert error_of(path) == f"{path}: permission denied, cannot read it"
    finally:
        path.chmod(0o644)


def test_other_os_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, b"x")

    def fake_open(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(builtins, "open", fake_open)
    assert error_of(path) == f"{path}: cannot read it (Input/output error)"


def test_errors_are_swamla_errors(tmp_path: Path) -> None:
    with pytest.raises(SwamlaError):
        read_prompts(tmp_path / "missing")


@pytest.mark.parametrize(
    "data, line, byte, column",
    [
        (b"ok\nfine\nabcd\xffx\n", 3, 0xFF, 5),
        (b"\xff", 1, 0xFF, 1),
        (b"\xef\xbb\xbf\xc3(", 1, 0xC3, 1),  # BOM does not count as a column
        (b"caf\xc3\xa9 \xe9t\xe9\n", 1, 0xE9, 6),  # columns count characters, not bytes
        (b"a\r\nb\rc\n\x80", 4, 0x80, 1),
        (b"a\n\n\n   \x92", 4, 0x92, 4),
        (b"ok\ntruncated \xe6\x97", 2, 0xE6, 11),
    ],
)
def test_invalid_utf8_names_line_and_column(
    tmp_path: Path, data: bytes, line: int, byte: int, column: int
) -> None:
    path = write(tmp_path, data)
    assert error_of(path) == (
        f"{path}: line {line} is not valid UTF-8 (byte 0x{byte:02x} at column {column})"
    )


def test_example_message_from_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, b"one\ntwo\nabcd\xff\n")
    assert error_of("prompts.txt") == (
        "prompts.txt: line 3 is not valid UTF-8 (byte 0xff at column 5)"
    )


def test_utf16_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "hello\n".encode("utf-16"))
    message = error_of(path)
    assert "line 1 is not valid UTF-8" in message
    assert "UTF-16" in message


def test_latin1_file(tmp_path: Path) -> None:
    path = write(tmp_path, "première\n".encode("latin-1"))
    assert "line 1 is not valid UTF-8 (byte 0xe8 at column 6)" in error_of(path)


def test_parse_prompts() -> None:
    assert parse_prompts(" a \n\n b\r\nc ") == ["a", "b", "c"]
    assert parse_prompts("") == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n")), max_size=8))
def test_read_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("p") / "prompts.txt"
    path.write_bytes("\n".join(lines).encode("utf-8", errors="surrogatepass"))
    try:
        result = read_prompts(path)
    except PromptsFileError as err:
        # Lone surrogates are not valid UTF-8.
        assert "not valid UTF-8" in str(err)
    else:
        assert result == [line.strip() for line in lines if line.strip()]


# -- special files, size, long lines (issue 21 items 6 and 8) ------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.timeout(20)
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "prompts.txt"
    os.mkfifo(fifo)
    assert error_of(fifo) == f"{fifo}: is a FIFO (named pipe), not a regular file (refused)"


@pytest.mark.timeout(20)
def test_link_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "prompts.txt"
    link.symlink_to("/dev/zero")
    assert error_of(link) == f"{link}: is a device, not a regular file (refused)"


def test_a_file_over_the_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import swamla_tui.batch.prompts as prompts

    monkeypatch.setattr(prompts, "MAX_PROMPTS_FILE_BYTES", 2 * 2**20)
    path = write(tmp_path, b"a\n" * (2**20 + 1))
    assert "larger than 2 MB" in error_of(path)


def test_clip_prompt_keeps_the_tail_that_can_reach_the_model() -> None:
    from swamla_tui.batch.prompts import CHARS_PER_TOKEN, clip_prompt

    line = "".join(chr(0x61 + i % 26) for i in range(100_000))
    assert clip_prompt(line, None) == (line, False)
    assert clip_prompt("short", 8) == ("short", False)
    kept, cut = clip_prompt(line, 64)
    assert cut and kept == line[-64 * CHARS_PER_TOKEN :]
