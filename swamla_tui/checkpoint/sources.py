"""Where a checkpoint comes from: a file, a local folder (flat or hub layout), a Hub repo id.

Nothing here reads a checkpoint; it only picks the file `read_checkpoint` will open, and
the folder where tokenizer files may live. The Hub is used only when reachable and not
disabled (HF_HUB_OFFLINE), and only the chosen checkpoint folder is fetched.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import CheckpointError, one_line
from ..base.paths import special_kind
from .selection import WEIGHTS, Candidate, Selection, hub_candidates, run_candidates

_HUB_DIR_RE = re.compile(r"^checkpoint_tokens_([0-9.]+)([kKmMbB]?)_loss_([0-9.]+)$")
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
    choices: tuple[Candidate, ...] = ()  # what the repo or run folder offered
    chosen: Candidate | None = None  # the one of `choices` opened


def local_candidates(folder: Path) -> tuple[list[Candidate], bool]:
    """(candidates, hub layout?) of a local folder, from names only (nothing is opened).

    Hub layout: `checkpoint_tokens_*`, `base/*`, `instruct/*` folders holding
    pytorch_model.bin (a downloaded repo); else a run folder's regular `*.pt` files.
    """
    rel: list[str] = []
    for top in _subdirs(folder):
        if top.name in ("base", "instruct"):
            rel += [f"{top.name}/{d.name}/{WEIGHTS}" for d in _subdirs(top)]
        else:
            rel.append(f"{top.name}/{WEIGHTS}")
    hub = [c for c in hub_candidates(rel) if (folder / c.path / WEIGHTS).is_file()]
    if hub:
        return hub, True
    pts = _regular_files(sorted(folder.glob("*.pt")))
    return run_candidates(p.name for p in pts), False


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def resolve_folder(
    folder: Path,
    hf_checkpoint: str | None = None,
    label: str | None = None,
    select: Selection | None = None,
) -> Resolved:
    """Pick the checkpoint inside a local folder: flat, hub layout, or a training run folder
    (the rule: `swamla_tui.checkpoint.selection`)."""
    label = label or str(folder)
    if hf_checkpoint:
        sub = folder / hf_checkpoint.strip("/")
        if sub.is_file() and special_file_kind(sub) is None:
            return Resolved(sub, folder, f"{label}/{hf_checkpoint.strip('/')}")
        if not sub.is_dir():
            cands, _ = local_candidates(folder)
            avail = [c.path for c in cands]
            hint = f"; available: {', '.join(avail[:5])}" if avail else ""
            raise CheckpointError(f"{label}: no checkpoint folder '{hf_checkpoint}'{hint}")
        return resolve_folder(sub, None, f"{label}/{hf_checkpoint.strip('/')}")
    flat = folder / WEIGHTS
    if flat.is_file():
        return Resolved(flat, folder, label)
    cands, hub = local_candidates(folder)
    if not cands:
        raise CheckpointError(
            f"{label}: no checkpoint here (looked for pytorch_model.bin, "
            "checkpoint_tokens_*/, base/*/, instruct/*/ and *.pt)"
        )
    best = (select or Selection()).pick(cands, label)
    if hub:
        sub = folder / best.path
        return Resolved(sub / WEIGHTS, sub, f"{label}/{best.path}", tuple(cands), best)
    path = folder / best.path
    shown = str(path) if label == str(folder) else f"{label}/{best.path}"
    return Resolved(path, folder, shown, tuple(cands), best)


def looks_like_repo_id(source: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source)) and not source.startswith(".")


_REACHABLE: dict[str, bool] = {}


def special_file_kind(p: Path) -> str | None:
    """What a path is when it exists but is neither a regular file nor a folder, else None.

    Opening a FIFO blocks until a writer appears and a device never ends, so such paths
    are refused by name, before anything opens them.
    """
    kind = special_kind(p)  # the one rule of base/paths.py, a folder allowed here
    return None if kind == "a folder" else kind


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


def _list_repo_files(repo_id: str, token: str | None) -> list[str]:
    from huggingface_hub import HfApi

    return list(HfApi(token=token).list_repo_files(repo_id))


def hub_choice(
    repo_id: str,
    files: list[str],
    hf_checkpoint: str | None = None,
    select: Selection | None = None,
) -> tuple[str, list[Candidate], Candidate | None]:
    """(folder to fetch, "" for a flat repo; the checkpoint folders; the one chosen) of a
    repo's file list. ``--hf_checkpoint`` wins; a root pytorch_model.bin comes next."""
    cands = hub_candidates(files)
    if hf_checkpoint:
        folder = hf_checkpoint.strip("/")
        return folder, cands, next((c for c in cands if c.path == folder), None)
    if WEIGHTS in files:
        return "", cands, None
    if not cands:
        raise CheckpointError(f"{repo_id}: no checkpoint in this repo (no pytorch_model.bin)")
    best = (select or Selection()).pick(cands, repo_id)
    return best.path, cands, best


def resolve_hub(
    repo_id: str,
    hf_checkpoint: str | None = None,
    progress: Callable[[str], None] | None = None,
    select: Selection | None = None,
) -> Resolved:
    """Fetch only the chosen checkpoint folder of a Hub repo into the normal HF cache."""
    try:
        from huggingface_hub import snapshot_download
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
            return resolve_folder(Path(snap), hf_checkpoint, repo_id, select)
        say(f"Listing {repo_id} on the Hub")
        files = _list_repo_files(repo_id, token)
        folder, cands, best = hub_choice(repo_id, files, hf_checkpoint, select)
        patterns = [f"{folder}/*"] if folder else ["*.bin", "*.json", "*.txt", "*.model", "*.md"]
        say(f"Downloading {repo_id}/{folder or ''} (cached after the first time)")
        kw: dict[str, Any] = {}
        if progress is not None:
            kw["tqdm_class"] = file_progress(progress, f"Downloading {repo_id}/{folder or ''}")
        snap = snapshot_download(
            repo_id, cache_dir=cache_dir, allow_patterns=patterns, token=token, **kw
        )
        res = resolve_folder(Path(snap), folder or None, repo_id)
        res.choices, res.chosen = tuple(cands), best
        return res
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
    select: Selection | None = None,
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
        return resolve_folder(p, hf_checkpoint, None, select)
    local_looking = s.endswith((".pt", ".bin", ".pth")) or Path(s.split("/")[0]).is_dir()
    if looks_like_repo_id(s) and not local_looking:
        return resolve_hub(s, hf_checkpoint, progress, select)
    raise CheckpointError(f"{s}: no such file or folder")


def survey(
    source: str, hf_checkpoint: str | None = None, select: Selection | None = None
) -> tuple[list[Candidate], Candidate | None]:
    """(the checkpoints a repo or run folder offers, the one `resolve` opens) for ``--info``;
    ([], None) for a single file or a flat folder. Lists, never downloads."""
    p = Path(source).expanduser()
    if p.is_dir():
        return _survey_folder(p, hf_checkpoint, select)
    if p.exists() or not looks_like_repo_id(source):
        return [], None
    if offline():
        from huggingface_hub import snapshot_download

        snap = snapshot_download(source, cache_dir=_cache_dir(), local_files_only=True)
        return _survey_folder(Path(snap), hf_checkpoint, select)
    files = _list_repo_files(source, os.environ.get("HF_TOKEN") or None)
    _, cands, best = hub_choice(source, files, hf_checkpoint, select)
    return cands, best


def _survey_folder(
    folder: Path, hf_checkpoint: str | None, select: Selection | None
) -> tuple[list[Candidate], Candidate | None]:
    if (folder / WEIGHTS).is_file():
        return [], None
    cands, _ = local_candidates(folder)
    if hf_checkpoint:
        want = hf_checkpoint.strip("/")
        return cands, next((c for c in cands if c.path == want), None)
    return cands, (select or Selection()).pick(cands, str(folder)) if cands else None
