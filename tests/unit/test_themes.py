"""User themes are untrusted: bounded, parsed per file, values checked, names not taken."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swamla_tui.ui.themes import MAX_THEME_BYTES, load_themes, theme_from_file

GOOD = 'name = "ocean"\nprimary = "#2E86AB"\n'


def _load(folder: Path) -> tuple[list[str], list[str]]:
    loaded = load_themes(folder)
    return [t.name for t in loaded.themes], loaded.warnings


def test_a_good_user_theme_with_variables_is_added(tmp_path: Path) -> None:
    (tmp_path / "ocean.toml").write_text(
        GOOD + '[variables]\n"footer-key-foreground" = "#F2A65A"\n'
        '"block-cursor-text-style" = "bold"\n"text-muted" = "auto 60%"\n'
    )
    names, warnings = _load(tmp_path)
    assert names[-1] == "ocean" and not warnings
    assert theme_from_file(tmp_path / "ocean.toml").variables["footer-key-foreground"] == "#F2A65A"


@pytest.mark.timeout(60)
def test_deep_toml_is_skipped_with_a_notice(tmp_path: Path) -> None:
    (tmp_path / "deep.toml").write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n" + GOOD)
    (tmp_path / "ok.toml").write_text(GOOD.replace("ocean", "ok"))
    names, warnings = _load(tmp_path)
    assert "ok" in names and "swamla-dark" in names
    assert len(warnings) == 1 and warnings[0].startswith("Skipped a user theme deep.toml")
    assert "\n" not in warnings[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.timeout(30)
def test_fifos_devices_and_big_files_are_skipped_unread(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.toml")
    (tmp_path / "zero.toml").symlink_to("/dev/zero")
    (tmp_path / "big.toml").write_text(GOOD + "# " + "x" * MAX_THEME_BYTES + "\n")
    names, warnings = _load(tmp_path)
    assert names == ["swamla-dark", "swamla-light"]
    said = " | ".join(warnings)
    assert len(warnings) == 3, said
    assert "FIFO" in said and "device" in said and "larger than" in said


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ('"no-such-variable" = "#FFFFFF"', "not a Textual variable"),
        ('"footer-key-foreground" = "not a colour"', "not a colour"),
        ('"footer-key-foreground" = 12', "short text"),
        ('"block-cursor-text-style" = "bold; rm -rf"', "not a text style"),
    ],
)
def test_variables_are_checked(tmp_path: Path, extra: str, says: str) -> None:
    (tmp_path / "v.toml").write_text(GOOD + "[variables]\n" + extra + "\n")
    names, warnings = _load(tmp_path)
    assert "ocean" not in names
    assert len(warnings) == 1 and says in warnings[0], warnings


@pytest.mark.parametrize("taken", ["swamla-dark", "swamla-light", "nord", "textual-dark"])
def test_a_user_theme_cannot_take_a_bundled_name(tmp_path: Path, taken: str) -> None:
    (tmp_path / "mine.toml").write_text(f'name = "{taken}"\nprimary = "#FF0000"\n')
    loaded = load_themes(tmp_path)
    mine = [t for t in loaded.themes if t.name == taken and t.primary == "#FF0000"]
    assert not mine and "is taken" in loaded.warnings[0]


def test_bad_names_and_types_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('name = "x\\u001b[31m"\nprimary = "#FF0000"\n')
    (tmp_path / "b.toml").write_text("primary = 5\n")
    (tmp_path / "c.toml").write_text('primary = "#FF0000"\ndark = "yes"\n')
    (tmp_path / "d.toml").write_text(GOOD.replace("ocean", "twice"))
    (tmp_path / "e.toml").write_text(GOOD.replace("ocean", "twice"))
    names, warnings = _load(tmp_path)
    assert names.count("twice") == 1 and len(warnings) == 4, warnings
