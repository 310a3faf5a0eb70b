"""Where a checkpoint comes from: a file, a local folder (flat or hub layout), a Hub repo id.

Nothing here reads a checkpoint; it only picks the file `read_checkpoint` will open, and
the folder where tokenizer files may live. The Hub is used only when reachable and not
disabled (HF_HUB_OFFLINE), and only the chosen checkpoint folder is fetched.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import CheckpointError, one_line

_HUB_DIR_RE = re.compile(r"^checkpoint_tokens_([0-9.]+)([kKmMbB]?)_loss_([0-9.]+)$")
_STEP_RE = re.compile(r"checkpoint_(\d+)\.pt$")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json", "tokenizer.model")


def hub_folder_tokens(name: str) -> float | None:
    m = _HUB_DIR_RE.match(name)
    if not m:
        return None
    mult = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}[m.group(2).lower()]
    return float(m.group(1)) * mult


def has_tokenizer_files(folder: Path) -> bool:
    return any((folder / f).is_file() for f in TOKENIZER_FILES)


def _regular_files(paths: list[Path]) -> list[Path]:
    """Keep regular files: a FIFO named `*.pt` must not be picked (opening it blocks)."""
    return [p for p in paths if p.is_file() and special_file_kind(p) is None]


@dataclass
class Resolved:
    path: Path  # the checkpoint file
    folder: Path | None  # where tokenizer files may live
    label: str  # what to call it in the UI


def resolve_folder(
    folder: Path, hf_checkpoint: str | None = None, label: str | None = None
) -> Resolved:
    """Pick the checkpoint inside a local folder (flat hub layout or checkpoint_tokens_* subfolders)."""
    label = label or str(folder)
    if hf_checkpoint:
        sub = folder / hf_checkpoint
        if not sub.is_dir():
            avail = sorted(
                p.name for p in folder.iterdir() if p.is_dir() and hub_folder_tokens(p.name)
            )
            hint = f"; available: {', '.join(avail[:5])}" if avail else ""
            raise CheckpointError(f"{label}: no checkpoint folder '{hf_checkpoint}'{hint}")
        return resolve_folder(sub, None, f"{label}/{hf_checkpoint}")
    flat = folder / "pytorch_model.bin"
    if flat.is_file():
        return Resolved(flat, folder, label)
    subs = [
        (t, p)
        for p in folder.iterdir()
        if p.is_dir() and (t := hub_folder_tokens(p.name)) is not None
    ]
    subs = [(t, p) for t, p in subs if (p / "pytorch_model.bin").is_file()]
    if subs:
        _, best = max(subs, key=lambda tp: tp[0])
        return Resolved(best / "pytorch_model.bin", best, f"{label}/{best.name}")
    pts = _regular_files(sorted(folder.glob("*.pt")))
    if pts:

        def step(p: Path) -> int:
            m = _STEP_RE.search(p.name)
            return int(m.group(1)) if m else -1

        best_pt = max(pts, key=lambda p: (step(p), p.name))
        return Resolved(best_pt, folder, str(best_pt) if label == str(folder) else label)
    raise CheckpointError(
        f"{label}: no checkpoint here (looked for pytorch_model.bin, "
        "checkpoint_tokens_*/pytorch_model.bin and *.pt)"
    )


def looks_like_repo_id(source: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source)) and not source.startswith(".")


_REACHABLE: dict[str, bool] = {}


def special_file_kind(p: Path) -> str | None:
    """What a path is when it exists but is neither a regular file nor a folder, else None.

    Opening a FIFO blocks until a writer appears and a device never ends, so such paths
    are refused by name, before anything opens them.
    """
    try:
        mode = p.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _hub_reachable() -> bool:
    """A 2-second TCP check, so a machine without network fails fast instead of retrying."""
    import socket
    from urllib.parse import urlparse

    url = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    host = urlparse(url).hostname or "huggingface.co"
    if host not in _REACHABLE:
        try:
            socket.create_connection((host, 443), timeout=2).close()
            _REACHABLE[host] = True
        except OSError:
            _REACHABLE[host] = False
    return _REACHABLE[host]


def offline() -> bool:
    """True when the Hub must not (HF_HUB_OFFLINE) or cannot (no route) be used."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return not _hub_reachable()


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def file_progress(say: Callable[[str], None], label: str) -> type:
    """A tqdm class for huggingface_hub's "files fetched" bar that reports to `say`.

    The UI cannot show a terminal progress bar; it gets "label: 3/7 files" lines instead.
    """
    from tqdm.auto import tqdm

    class _Report(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["file"] = io.StringIO()  # draw nothing
            kwargs.pop("disable", None)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            out: bool | None = super().update(n)
            total = f"/{self.total}" if self.total else ""
            say(f"{label}: {int(self.n)}{total} files")
            return out

    return _Report


def quiet_hub() -> None:
    """Silence huggingface_hub's own warnings (the UI shows one line per problem instead)."""
    try:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001
        pass


def resolve_hub(
    repo_id: str, hf_checkpoint: str | None = None, progress: Callable[[str], None] | None = None
) -> Resolved:
    """Fetch only the chosen checkpoint folder of a Hub repo into the normal HF cache."""
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError as e:  # pragma: no cover
        raise CheckpointError(f"huggingface_hub is needed for Hub repos: {e}") from None
    quiet_hub()
    token = os.environ.get("HF_TOKEN") or None
    cache_dir = _cache_dir()
    say = progress or (lambda _s: None)
    is_offline = offline()
    try:
        if is_offline:
            say(f"Looking for {repo_id} in the local cache (offline)")
            snap = snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True)
            return resolve_folder(Path(snap), hf_checkpoint, repo_id)
        say(f"Listing {repo_id} on the Hub")
        files = HfApi(token=token).list_repo_files(repo_id)
        if hf_checkpoint:
            folder = hf_checkpoint.strip("/")
        elif "pytorch_model.bin" in files:
            folder = ""
        else:
            dirs = {f.split("/", 1)[0] for f in files if "/" in f}
            scored = [
                (t, d)
                for d in dirs
                if (t := hub_folder_tokens(d)) is not None and f"{d}/pytorch_model.bin" in files
            ]
            if not scored:
                raise CheckpointError(
                    f"{repo_id}: no checkpoint in this repo (no pytorch_model.bin)"
                )
            folder = max(scored)[1]
        patterns = [f"{folder}/*"] if folder else ["*.bin", "*.json", "*.txt", "*.model", "*.md"]
        say(f"Downloading {repo_id}/{folder or ''} (cached after the first time)")
        kw: dict[str, Any] = {}
        if progress is not None:
            kw["tqdm_class"] = file_progress(progress, f"Downloading {repo_id}/{folder or ''}")
        snap = snapshot_download(
            repo_id, cache_dir=cache_dir, allow_patterns=patterns, token=token, **kw
        )
        return resolve_folder(Path(snap), folder or None, repo_id)
    except CheckpointError:
        raise
    except Exception as e:  # huggingface_hub raises many types; all become one line
        kind = type(e).__name__
        if is_offline or "LocalEntryNotFound" in kind or "offline" in str(e).lower():
            raise CheckpointError(
                f"{repo_id}: not in the local Hugging Face cache and the Hub is offline "
                "(unset HF_HUB_OFFLINE and connect once, or pass a local path)"
            ) from None
        if "RepositoryNotFound" in kind or "404" in str(e):
            raise CheckpointError(
                f"{repo_id}: no such repo on the Hub (or it is private: set HF_TOKEN)"
            ) from None
        raise CheckpointError(
            f"{repo_id}: cannot fetch from the Hub ({kind}: {one_line(e, 100)})"
        ) from None


def resolve(
    source: str | os.PathLike[str],
    hf_checkpoint: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Resolved:
    """A file, a local folder, or a Hub repo id -> the checkpoint file to read."""
    s = os.fspath(source)
    p = Path(s).expanduser()
    kind = special_file_kind(p)
    if kind is not None:
        raise CheckpointError(f"{s}: is {kind}, not a checkpoint file (refused, not opened)")
    if p.is_file():
        folder = p.parent if has_tokenizer_files(p.parent) else None
        return Resolved(p, folder, str(p))
    if p.is_dir():
        return resolve_folder(p, hf_checkpoint)
    local_looking = s.endswith((".pt", ".bin", ".pth")) or Path(s.split("/")[0]).is_dir()
    if looks_like_repo_id(s) and not local_looking:
        return resolve_hub(s, hf_checkpoint, progress)
    raise CheckpointError(f"{s}: no such file or folder")
