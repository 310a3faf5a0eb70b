"""Help screen, themes (files, --theme, palette, remembered), palette commands, batch hook."""

from __future__ import annotations

import io
import json

from textual.binding import Binding, BindingType
from textual.command import CommandList
from textual.widgets import Static

from swamla_tui.chat.commands.parse import COMMANDS
from swamla_tui.ui.screens.help import HelpScreen
from swamla_tui.ui.themes import THEMES_DIR, bundled_themes
from tests.support.fakes import FakeLM

from .pilot import (
    SIZE,
    ask,
    errors,
    loaded_app,
    make_app,
    wait_loaded,
)


def only_bindings(items: list[BindingType]) -> list[Binding]:
    """The screens declare `Binding` objects only: a tuple has no description or action."""
    bindings = [b for b in items if isinstance(b, Binding)]
    assert len(bindings) == len(items), "a binding declared as a tuple"
    return bindings


def as_text(renderable) -> str:
    from rich.console import Console

    console = Console(width=120, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


async def test_help_screen_keys_and_commands(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.query_one("#help-commands", Static)
        text = as_text(app.screen._commands_table())
        for spec in COMMANDS:
            assert spec.usage in text
        keys = as_text(app.screen._keys_table())
        assert "Ctrl+J" in keys and "Esc" in keys
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        app.chat_screen.chat.focus()  # "?" opens help when the input does not have focus
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("q")
        assert not isinstance(app.screen, HelpScreen)


async def test_footer_bindings_have_descriptions(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        shown = [b for b in only_bindings(app.chat_screen.BINDINGS) if getattr(b, "show", True)]
        assert shown and all(b.description for b in shown)


def test_theme_files():
    names = {t.name for t in bundled_themes()}
    assert {"swamla-dark", "swamla-light"} <= names
    assert len(list(THEMES_DIR.glob("*.toml"))) >= 2


def test_tcss_uses_theme_variables_only():
    import re
    from pathlib import Path

    import swamla_tui.ui as ui

    folder = Path(ui.__file__).parent
    sources = [(folder / "app.tcss").read_text()]
    for path in (folder / "widgets").glob("*.py"):
        sources.append(path.read_text())
    for source in sources:
        assert not re.search(r"#[0-9a-fA-F]{3,8}\b\s*;", source)
        assert not re.search(r"\brgb\(", source)


async def test_theme_from_argument_and_remembered(tmp_path):
    async with loaded_app(FakeLM(), tmp_path, theme="light") as (app, pilot):
        assert app.theme == "swamla-light"
        await pilot.press("ctrl+t")
        assert app.theme == "swamla-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "swamla-light"
    settings = json.loads((tmp_path / "data" / "settings.json").read_text())
    assert settings["theme"] == "swamla-light"
    app2 = make_app(FakeLM(), tmp_path)
    async with app2.run_test(size=SIZE) as pilot:
        assert app2.theme == "swamla-light"


async def test_default_theme_and_unknown_theme(tmp_path):
    async with loaded_app(FakeLM(), tmp_path, theme="no-such-theme") as (app, pilot):
        assert app.theme == "swamla-dark"
        assert errors(app)[0].startswith("Unknown theme 'no-such-theme'")


async def test_palette_has_main_actions(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for title in (
            "Clear conversation",
            "Retry",
            "Save conversation",
            "Toggle theme",
            "Help",
            "Batch run",
        ):
            assert title in titles
        await ask(pilot, "hello")
        cmd = {c.title: c for c in app.get_system_commands(app.screen)}
        cmd["Toggle theme"].callback()
        assert app.theme == "swamla-light"
        cmd["Save conversation"].callback()
        assert list((tmp_path / "data" / "exports").glob("*.md"))
        cmd["Clear conversation"].callback()
        await pilot.pause()
        assert app.chat_screen.conversation.turns == []


async def test_palette_opens_and_runs_help(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        await pilot.press("ctrl+p")
        await pilot.pause()
        for ch in "Help":
            await pilot.press(ch)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)


async def test_open_batch_hook(tmp_path):
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        app.chat_screen.open_batch(None)
        await pilot.pause()
        try:
            from swamla_tui.ui.screens.batch import BatchScreen
        except ImportError:
            assert errors(app)[-1] == "The batch view is not available in this build."
        else:
            assert isinstance(app.screen, BatchScreen)


async def test_narrow_terminal_hides_sidebar_ctrl_b_shows_it(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    async with app.run_test(size=(70, 30)) as pilot:
        await wait_loaded(pilot)
        assert not app.chat_screen.sidebar.display or app.chat_screen.sidebar.region.width == 0
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert app.chat_screen.sidebar.display and app.chat_screen.sidebar.region.width > 0


USER_THEME = """\
name = "my-ocean"
dark = true
primary = "#2E86AB"
background = "#0B1D2A"
"""


async def test_user_themes_from_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "config" / "themes"
    folder.mkdir(parents=True)
    (folder / "ocean.toml").write_text(USER_THEME, encoding="utf-8")
    (folder / "broken.toml").write_text('name = "x"\nprimary = \n', encoding="utf-8")
    (folder / "badcolour.toml").write_text('primary = "not a colour"\n', encoding="utf-8")
    monkeypatch.setenv("SWAMLA_TUI_CONFIG_DIR", str(tmp_path / "config"))
    async with loaded_app(FakeLM(), tmp_path, theme="my-ocean") as (app, pilot):
        assert "my-ocean" in app.available_themes
        assert app.theme == "my-ocean"
        warnings = [e for e in errors(app) if e.startswith("Skipped a user theme")]
        assert sorted(w.split(":")[0] for w in warnings) == [
            "Skipped a user theme badcolour.toml",
            "Skipped a user theme broken.toml",
        ]
        assert all("\n" not in w for w in warnings)
        # the palette's theme list offers it
        await pilot.press("ctrl+p")
        for ch in "theme":
            await pilot.press(ch)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.3)
        for ch in "ocean":
            await pilot.press(ch)
        await pilot.pause(0.3)
        palette = app.screen
        options = palette.query_one("CommandList", CommandList).option_count
        assert options >= 1
        assert "my-ocean" in str(
            palette.query_one("CommandList", CommandList).get_option_at_index(0).prompt
        )


def test_keys_help_is_built_from_bindings():
    from swamla_tui.ui.screens.batch import BatchScreen
    from swamla_tui.ui.screens.keys_help import key_label, key_rows

    assert [key_label(k) for k in ("ctrl+l", "escape", "R", "r", "f1", "question_mark")] == [
        "Ctrl+L",
        "Esc",
        "Shift+R",
        "r",
        "F1",
        "?",
    ]
    rows = dict(key_rows(BatchScreen.BINDINGS, BatchScreen.EXTRA_KEYS))
    assert rows["+ / ="].startswith("Double the batch size")
    assert rows["F1 / ?"] == "This help"
    assert rows["Enter / click"].startswith("Show the whole prompt")
    assert len(rows) == len({b.action for b in only_bindings(BatchScreen.BINDINGS)}) + 1


async def test_sliders_use_the_one_range_table(tmp_path):
    from swamla_tui.base.params import PARAM_SPECS

    async with loaded_app(FakeLM(max_length=300), tmp_path) as (app, pilot):
        for name, spec in PARAM_SPECS.items():
            slider = app.chat_screen.sidebar.slider(name)
            hi = 300 if name == "max_new_tokens" else spec.hi
            assert (slider.minimum, slider.maximum, slider.step) == (spec.lo, hi, spec.step)


async def test_palette_entries_named_in_the_readme_exist(tmp_path):
    """The README once sent users to a "Change theme" entry the palette calls "Theme"."""
    import re

    from tests.support.helpers import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8").replace("\n", " ")
    named = {
        a or b for a, b in re.findall(r'palette[^"*.]{0,40}(?:"([^"]+)"|\*\*([^*]+)\*\*)', readme)
    }
    assert {"Theme", "Batch results", "Batch run"} <= named
    async with loaded_app(FakeLM(), tmp_path) as (app, pilot):
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert named <= titles, named - titles
