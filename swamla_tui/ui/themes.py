"""Colour themes: the bundled ``themes/*.toml`` and the user's own, as Textual themes.

The bundled files live in the repository's top-level ``themes/`` folder; the wheel ships
them as ``swamla_tui/themes/`` (see pyproject.toml), so both places are looked at.
User themes are ``*.toml`` files in ``<config folder>/themes/`` (`swamla_tui.base.paths`),
read at start; a user file with a bundled theme's name replaces it. A file that cannot
be read gives a one-line warning, never a crash. The format is in the README.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.theme import Theme

from ..base.errors import SwamlaError
from ..base.paths import config_dir

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


def theme_from_file(path: Path) -> Theme:
    """The theme in `path`; `SwamlaError` (one line) when it cannot be read or used."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SwamlaError(f"theme {path.name}: {' '.join(str(exc).split())}") from None
    colours = {k: str(data[k]) for k in _COLOURS if k in data}
    if "primary" not in colours:
        raise SwamlaError(f'theme {path.name}: needs at least primary = "#RRGGBB"')
    variables = data.get("variables")
    try:
        theme = Theme(
            name=str(data.get("name", path.stem)),
            primary=colours.pop("primary"),
            dark=bool(data.get("dark", True)),
            variables={str(k): str(v) for k, v in variables.items()}
            if isinstance(variables, dict)
            else {},
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
    folder = user_dir if user_dir is not None else user_themes_dir()
    try:
        files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    except OSError:
        files = []
    for path in files:
        try:
            themes.append(theme_from_file(path))
        except SwamlaError as exc:
            warnings.append(f"Skipped a user {exc}")
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
