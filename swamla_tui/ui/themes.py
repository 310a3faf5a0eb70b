"""Colour themes: the bundled ``themes/*.toml`` and the user's own, as Textual themes.

The bundled files live in the repository's top-level ``themes/`` folder; the wheel ships
them as ``swamla_tui/themes/`` (see pyproject.toml), so both places are looked at.
User themes are ``*.toml`` files in ``<config folder>/themes/`` (`swamla_tui.base.paths`),
read at start. A user file is untrusted input: it must be a regular file of at most
`MAX_THEME_BYTES` (a FIFO or a link to ``/dev/zero`` is refused unopened), its colours and
`variables` must be ones Textual knows and can parse, and its name must not be a bundled
or built-in theme's. A file that fails any of this (deep TOML that exhausts the parser
included) is skipped with a one-line warning, never a crash. The format is in the README.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from textual.color import Color
from textual.theme import BUILTIN_THEMES, Theme

from ..base.errors import SwamlaError
from ..base.paths import config_dir, read_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DEFAULT_THEME",
    "LIGHT_THEME",
    "THEMES_DIR",
    "LoadedThemes",
    "bundled_themes",
    "choose_theme",
    "load_themes",
    "resolve_theme_name",
    "theme_from_file",
    "user_themes_dir",
]

_PACKAGE = Path(__file__).resolve().parent.parent
THEMES_DIR = _PACKAGE / "themes" if (_PACKAGE / "themes").is_dir() else _PACKAGE.parent / "themes"
"""The bundled themes: in the installed package, else the source tree's ``themes/``."""

DEFAULT_THEME = "swamla-dark"
LIGHT_THEME = "swamla-light"

_COLOURS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)


MAX_THEME_BYTES = 64 * 1024
"""A theme is a dozen lines; anything bigger is not one."""
MAX_USER_THEMES = 200
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_STYLE_WORDS = frozenset(
    [
        "bold",
        "b",
        "dim",
        "d",
        "italic",
        "i",
        "underline",
        "u",
        "underline2",
        "uu",
        "blink",
        "b",
        "blink2",
        "bb",
        "reverse",
        "r",
        "strike",
        "s",
        "overline",
        "o",
        "conceal",
        "c",
        "not",
        "none",
    ]
)
_AUTO = re.compile(r"auto( \d{1,3}%)?|initial|transparent")


@cache
def _known_variables() -> frozenset[str]:
    """The variables a Textual theme defines (what `[variables]` may override)."""
    return frozenset(Theme(name="probe", primary="#000000").to_color_system().generate())


def _check_variable(name: str, key: Any, value: Any) -> tuple[str, str]:
    if not isinstance(key, str) or key not in _known_variables():
        raise SwamlaError(f"theme {name}: [variables] {str(key)[:40]!r} is not a Textual variable")
    if not isinstance(value, str) or len(value) > 64:
        raise SwamlaError(f"theme {name}: [variables] {key} must be a short text")
    if key.endswith(("style", "style-hover")):
        if not value.split() or not set(value.split()) <= _STYLE_WORDS:
            raise SwamlaError(f"theme {name}: [variables] {key} = {value!r} is not a text style")
    elif not _AUTO.fullmatch(value):
        try:
            Color.parse(value)
        except Exception:  # noqa: BLE001 - Textual's own parse error
            raise SwamlaError(
                f"theme {name}: [variables] {key} = {value!r} is not a colour"
            ) from None
    return key, value


def theme_from_file(path: Path) -> Theme:
    """The theme in `path`; `SwamlaError` (one line) when it cannot be read or used."""
    try:
        raw = read_regular(path, "theme file", limit=MAX_THEME_BYTES)
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except SwamlaError as exc:
        raise SwamlaError(f"theme {path.name}: {' '.join(str(exc).split())}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise SwamlaError(f"theme {path.name}: {' '.join(str(exc).split())[:200]}") from None
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SwamlaError(f"theme {path.name}: name must be 1-64 letters, digits, '.', '_' or '-'")
    for k in (*_COLOURS, "dark"):
        if k in data and not isinstance(data[k], bool if k == "dark" else str):
            raise SwamlaError(
                f"theme {path.name}: {k} must be a {'true/false' if k == 'dark' else 'text'}"
            )
    colours = {k: str(data[k]) for k in _COLOURS if k in data}
    if "primary" not in colours:
        raise SwamlaError(f'theme {path.name}: needs at least primary = "#RRGGBB"')
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or len(variables) > len(_known_variables()):
        raise SwamlaError(f"theme {path.name}: [variables] must be a table of Textual variables")
    checked = dict(_check_variable(path.name, k, v) for k, v in variables.items())
    try:
        theme = Theme(
            name=name,
            primary=colours.pop("primary"),
            dark=bool(data.get("dark", True)),
            variables=checked,
        )
        for key, value in colours.items():  # the optional colours, as given
            setattr(theme, key, value)
        theme.to_color_system()  # a bad colour fails here, not at the first paint
        return theme
    except Exception as exc:  # noqa: BLE001 - a bad colour string: Textual's own error
        raise SwamlaError(f"theme {path.name}: {' '.join(str(exc).split())}") from None


def bundled_themes() -> list[Theme]:
    """Every theme file shipped with the package, sorted by file name."""
    return [theme_from_file(p) for p in sorted(THEMES_DIR.glob("*.toml"))]


def user_themes_dir() -> Path:
    return config_dir() / "themes"


@dataclass
class LoadedThemes:
    themes: list[Theme]
    warnings: list[str]


def load_themes(user_dir: Path | None = None) -> LoadedThemes:
    """The bundled themes, then the user's (`user_dir`, default `user_themes_dir()`)."""
    themes = bundled_themes()
    warnings: list[str] = []
    taken = {t.name for t in themes} | set(BUILTIN_THEMES)
    folder = user_dir if user_dir is not None else user_themes_dir()
    try:
        files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    except OSError:
        files = []
    if len(files) > MAX_USER_THEMES:
        warnings.append(f"Read only the first {MAX_USER_THEMES} of {len(files)} user themes")
        files = files[:MAX_USER_THEMES]
    for path in files:
        try:
            theme = theme_from_file(path)
        except SwamlaError as exc:
            warnings.append(f"Skipped a user {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the app
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
            warnings.append(f"Skipped a user theme {path.name}: {reason}")
            continue
        if theme.name in taken:
            warnings.append(
                f"Skipped a user theme {path.name}: the name {theme.name!r} is taken "
                "(a bundled theme or an earlier file)"
            )
            continue
        taken.add(theme.name)
        themes.append(theme)
    return LoadedThemes(themes, warnings)


def resolve_theme_name(name: str | None, available: set[str]) -> str | None:
    """Map a user-given name ("dark", "light", "swamla-dark", "nord") to a registered one."""
    if not name:
        return None
    name = name.strip().lower()
    for candidate in (name, f"swamla-{name}"):
        if candidate in available:
            return candidate
    return None


def choose_theme(
    requested: str | None, remembered: object, available: set[str]
) -> tuple[str, str | None]:
    """The theme to start with, and a warning when `requested` (``--theme``) is unknown.

    ``--theme`` wins, then the remembered choice, then `DEFAULT_THEME`.
    """
    chosen = resolve_theme_name(requested, available)
    warning = None
    if requested and chosen is None:
        warning = f"Unknown theme {requested!r}; available: {', '.join(sorted(available))}"
    if chosen is None and isinstance(remembered, str):
        chosen = resolve_theme_name(remembered, available)
    return chosen or DEFAULT_THEME, warning
