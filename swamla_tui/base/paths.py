"""Where swamla-tui keeps its files (pure Python: no torch, no textual).

One place for the folders, so the chat transcripts, ``/save``, batch exports, settings
and user themes always agree: the data folder (``$SWAMLA_TUI_DATA_DIR`` or the
platform's user data folder) and the config folder (``$SWAMLA_TUI_CONFIG_DIR`` or the
platform's user config folder). Both expand ``~``; a blank variable counts as unset.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["APP_NAME", "CONFIG_DIR_ENV", "DATA_DIR_ENV", "config_dir", "data_dir"]

APP_NAME = "swamla-tui"
DATA_DIR_ENV = "SWAMLA_TUI_DATA_DIR"
CONFIG_DIR_ENV = "SWAMLA_TUI_CONFIG_DIR"


def _override(env: str) -> Path | None:
    value = os.environ.get(env, "").strip()
    return Path(value).expanduser() if value else None


def data_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """`given` (a caller's choice, e.g. a test's), else ``$SWAMLA_TUI_DATA_DIR``, else the
    platform's user data folder."""
    if given is not None:
        return Path(given).expanduser()
    override = _override(DATA_DIR_ENV)
    if override is not None:
        return override
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """``$SWAMLA_TUI_CONFIG_DIR``, else the platform's user config folder (user themes)."""
    override = _override(CONFIG_DIR_ENV)
    if override is not None:
        return override
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
