"""Load the bundled colour themes (``swamla_tui/themes/*.toml``) into Textual themes."""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

THEMES_DIR = Path(__file__).resolve().parent.parent / "themes"
DEFAULT_THEME = "swamla-dark"
LIGHT_THEME = "swamla-light"

_THEME_FIELDS = (
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


def _parse_toml(text: str) -> dict[str, object]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the theme files are flat key = value
        data: dict[str, object] = {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", "[")) or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            if value.startswith('"'):
                data[key] = value[1:].split('"', 1)[0]
            else:
                value = value.split("#", 1)[0].strip()
                data[key] = value == "true" if value in ("true", "false") else float(value)
        return data
    return tomllib.loads(text)


def theme_from_file(path: Path) -> Theme:
    data = _parse_toml(path.read_text(encoding="utf-8"))
    kwargs: dict[str, object] = {k: data[k] for k in _THEME_FIELDS if k in data}
    variables = data.get("variables")
    return Theme(
        name=str(data.get("name", path.stem)),
        dark=bool(data.get("dark", True)),
        variables=dict(variables) if isinstance(variables, dict) else {},
        **kwargs,  # type: ignore[arg-type]
    )


def bundled_themes() -> list[Theme]:
    """Every theme file shipped with the package, sorted by name."""
    return [theme_from_file(p) for p in sorted(THEMES_DIR.glob("*.toml"))]


def resolve_theme_name(name: str | None, available: set[str]) -> str | None:
    """Map a user-given name ("dark", "light", "swamla-dark", "nord") to a registered one."""
    if not name:
        return None
    name = name.strip().lower()
    for candidate in (name, f"swamla-{name}"):
        if candidate in available:
            return candidate
    return None
