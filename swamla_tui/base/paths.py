"""Where swamla-tui keeps its files (pure Python: no torch, no textual).

One place for the folders, so the chat transcripts, ``/save``, batch exports, settings
and user themes always agree: the data folder (``$SWAMLA_TUI_DATA_DIR`` or the
platform's user data folder) and the config folder (``$SWAMLA_TUI_CONFIG_DIR`` or the
platform's user config folder). Both expand ``~``; a blank variable counts as unset.

Also the one rule for opening a file the user names (prompts, outputs, themes, tokenizer
files, transcripts, settings): only a regular file (or a link to one) is read or
written. A FIFO blocks the open until a writer appears, a device never ends and a socket
cannot be opened at all, so they are refused by `stat` before anything opens them; and
`read_regular` opens with ``O_NONBLOCK`` and checks the opened file again (`fstat`), so a
path swapped for a FIFO between the two cannot hang the app either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import SwamlaError

__all__ = [
    "APP_NAME",
    "CONFIG_DIR_ENV",
    "DATA_DIR_ENV",
    "config_dir",
    "data_dir",
    "read_regular",
    "require_regular_file",
    "require_writable_target",
    "special_kind",
]

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


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _shown(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)[1:-1]


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """What `path` is when it exists and is not a regular file ("a FIFO (named pipe)",
    "a device", "a socket", "a folder"); None when it is one, or does not exist. Links
    are followed: a link to ``/dev/zero`` is a device."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return _kind(mode)


def require_regular_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    error: type[SwamlaError] = SwamlaError,
    missing_ok: bool = False,
) -> None:
    """Raise `error` (one line) unless `path` is a regular file; nothing is opened.

    `what` names the file for the user ("prompts file", "output file"). With
    `missing_ok` a path that does not exist passes (a file about to be created).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if missing_ok:
            return
        raise error(f"{_shown(path)}: no such file") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise error(f"{_shown(path)}: cannot use it as the {what} ({reason})") from None
    kind = _kind(mode)
    if kind is not None:
        raise error(f"{_shown(path)}: is {kind}, not a regular file (refused as the {what})")


def require_writable_target(
    path: str | os.PathLike[str], what: str, *, error: type[SwamlaError] = SwamlaError
) -> None:
    """A file about to be written: absent, or a regular file (never a FIFO or a device)."""
    require_regular_file(path, what, error=error, missing_ok=True)


def read_regular(
    path: str | os.PathLike[str],
    what: str,
    *,
    limit: int,
    error: type[SwamlaError] = SwamlaError,
) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them, else `error`.

    The size is checked on the opened file before reading, and the read stops at
    `limit + 1` bytes whatever the file claims (a file that grows while read).
    """
    require_regular_file(path, what, error=error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(f"{_shown(path)}: cannot read the {what} ({reason})") from None
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:  # swapped since the stat
            raise error(f"{_shown(path)}: is {kind}, not a regular file (refused as the {what})")
        if os.fstat(fd).st_size > limit:
            raise error(f"{_shown(path)}: the {what} is larger than {_size(limit)} (refused)")
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(f"{_shown(path)}: cannot read the {what} ({reason})") from None
    finally:
        os.close(fd)
    if got > limit:
        raise error(f"{_shown(path)}: the {what} is larger than {_size(limit)} (refused)")
    return b"".join(chunks)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"
