"""Finding and safely reading SWA-MLA checkpoints.

A checkpoint is untrusted data: a pickle can name any callable. We (1) scan the pickle's
opcodes and refuse any global outside a small allow-list, naming it, before anything is
unpickled, then (2) unpickle with `torch.load(weights_only=True)`, where the FP8 optimizer
state class is bound to an inert stand-in so torchao is never needed or imported.
Zip-format files are memory-mapped, so optimizer moments are never read into memory.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, UnsafeCheckpointError
from .model.generation import prune_state_dict

# ----------------------------------------------------------------------------- allow-list
_ALLOWED_EXACT = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_wrapper_subclass",
    "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._tensor._rebuild_from_type_v2",
    "torch.serialization._get_layout",
    "torch.device",
    "torch.Size",
    "torch.Tensor",
    "torch.nn.parameter.Parameter",
    "torch.storage.UntypedStorage",
    "torch.storage.TypedStorage",
    "builtins.set",
    "_codecs.encode",
    "torchao.optim.subclass_fp8.OptimStateFp8",
    # numpy scalars sometimes appear in metadata (val_loss); torch's own docs allow these
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
}
_ALLOWED_RE = re.compile(
    r"^torch\.(?:[A-Za-z0-9]+Storage|float\d*|bfloat16|half|double|u?int\d+|bool|"
    r"float8_\w+|complex\d+|strided|sparse_coo|contiguous_format|preserve_format)$"
    r"|^numpy\.dtypes\.\w+DType$"
)


# torchao's low-bit optimizer states (OptimStateFp8, OptimState8bit, OptimState4bit):
# tensor subclasses that only an optimizer needs. They are bound to an inert stand-in.
_OPTIM_STATE_RE = re.compile(r"^torchao\.optim\.subclass_\w+\.OptimState\w+$")


def _allowed(name: str) -> bool:
    return name in _ALLOWED_EXACT or bool(_ALLOWED_RE.match(name) or _OPTIM_STATE_RE.match(name))


class _OptimStateStandIn(torch.Tensor):
    """Inert stand-in for torchao's optimizer-state tensors: keeps its state, computes nothing."""

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001
        raise RuntimeError("optimizer state is not loaded for inference")

    def __setstate__(self, state: Any) -> None:
        self._optim_state = state


_FP8_NAME = "torchao.optim.subclass_fp8.OptimStateFp8"
_stand_in_cache: dict[str, type] = {}


def _stand_ins(names: set[str]) -> list[tuple[type, str]]:
    """One stand-in class per torchao optimizer-state name the pickle uses (FP8 always)."""
    out = []
    for name in sorted({_FP8_NAME} | {n for n in names if _OPTIM_STATE_RE.match(n)}):
        if name not in _stand_in_cache:
            _stand_in_cache[name] = type(name.rsplit(".", 1)[1], (_OptimStateStandIn,), {})
        out.append((_stand_in_cache[name], name))
    return out


def _pickle_globals(data: bytes | io.BufferedIOBase) -> Iterator[str]:
    """Yield the 'module.name' of every global a pickle references (GLOBAL, STACK_GLOBAL)."""
    memo: dict[int, Any] = {}
    strings: list[Any] = []
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("GLOBAL", "INST"):
            mod, _, attr = str(arg).partition(" ")
            yield f"{mod}.{attr}"
        elif name in (
            "SHORT_BINUNICODE",
            "BINUNICODE",
            "UNICODE",
            "BINUNICODE8",
            "STRING",
            "BINSTRING",
            "SHORT_BINSTRING",
        ):
            strings.append(arg)
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = strings[-1] if strings else None
        elif name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(memo.get(int(arg)))
        elif name == "STACK_GLOBAL":
            mod, attr = (strings[-2], strings[-1]) if len(strings) >= 2 else (None, None)
            yield f"{mod}.{attr}" if isinstance(mod, str) and isinstance(attr, str) else "?"


def _scan(path: Path) -> set[str]:
    """Refuse the file if its pickle names anything outside the allow-list; returns the names."""
    names: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
                if not pkl:
                    raise CheckpointError(f"{path}: a zip file, but not a PyTorch checkpoint")
                names = list(_pickle_globals(zf.read(pkl[0])))
        else:
            with open(path, "rb") as fh:
                # legacy format: magic, protocol, sys_info, then the object itself
                for _ in range(4):
                    names.extend(_pickle_globals(fh))
    except CheckpointError:
        raise
    except (
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        KeyError,
        IndexError,
        UnicodeDecodeError,
        OSError,
    ):
        # unreadable past this point (e.g. a raw pickle has no 2nd object): torch.load below
        # gives the precise error, but the globals already seen are still checked
        pass
    bad = [n for n in names if n != "?" and not _allowed(n)]
    if bad:
        raise UnsafeCheckpointError(
            f"{path}: refused: the file references '{bad[0]}', which a checkpoint never needs "
            "(only tensors and plain containers are loaded; nothing was run)"
        )
    return set(names)


def _reason(msg: str) -> str:
    """The informative line of a torch.load error (skips its generic weights_only preamble)."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    useful = [
        ln
        for ln in lines
        if not ln.startswith(("Weights only load failed", "Check the documentation", "Please file"))
    ]
    return ((useful or lines or ["unreadable"])[0])[:100]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Unpickle a checkpoint file safely; zip-format files are memory-mapped."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder, not a checkpoint file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: empty file")
    names = _scan(p)
    is_zip = zipfile.is_zipfile(p)
    try:
        with torch.serialization.safe_globals(_stand_ins(names)):
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", msg)
        if m:
            raise UnsafeCheckpointError(
                f"{p}: refused: the file references '{m.group(1)}', which a checkpoint never "
                "needs (nothing was run)"
            ) from None
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({_reason(msg)})") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        if "central directory" in first or isinstance(e, EOFError) or "truncated" in first.lower():
            raise CheckpointError(
                f"{p}: the file is truncated or corrupt ({first[:100]})"
            ) from None
        raise CheckpointError(
            f"{p}: cannot be read as a PyTorch checkpoint ({first[:100]})"
        ) from None
    except Exception as e:  # noqa: BLE001 - the unpickler raises IndexError etc. on junk
        raise CheckpointError(
            f"{p}: not a PyTorch checkpoint ({type(e).__name__}: {_reason(str(e))})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


# ----------------------------------------------------------------------------- containers
@dataclass
class RawCheckpoint:
    state_dict: dict[str, torch.Tensor]
    args: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # step, total_tokens, val_loss


_PREFIXES = ("module.", "_orig_mod.")


def strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for pre in _PREFIXES:
            if key.startswith(pre):
                key, changed = key[len(pre) :], True
    return key


def unpack(obj: dict[str, Any], origin: str = "checkpoint") -> RawCheckpoint:
    """Recognise a training checkpoint, a hub `pytorch_model.bin` or a bare state dict."""
    if isinstance(obj.get("model_state_dict"), dict):  # v2 §2: model_state_dict, else model
        sd, wkey = obj["model_state_dict"], "model_state_dict"
        kind = "hub checkpoint" if "val_loss" in obj else "training checkpoint"
    elif isinstance(obj.get("model"), dict):
        sd, kind, wkey = obj["model"], "training checkpoint", "model"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, kind, wkey = obj, "state dict", ""
    else:
        keys = ", ".join(sorted(map(str, obj))[:6])
        raise CheckpointError(
            f"{origin}: not an SWA-MLA checkpoint (no 'model' or 'model_state_dict'; keys: {keys})"
        )
    clean = prune_state_dict(
        {strip_prefixes(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    )
    args = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    meta: dict[str, Any] = {"format": kind, "weights_key": wkey}
    for k in ("step", "total_tokens", "val_loss", "total_tokens_seen"):
        if k in obj and isinstance(obj[k], (int, float)):
            meta["total_tokens" if k == "total_tokens_seen" else k] = obj[k]
    return RawCheckpoint(clean, dict(args or {}), meta)


# ----------------------------------------------------------------------------- sources
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
    pts = sorted(folder.glob("*.pt"))
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


def _offline() -> bool:
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
            out = super().update(n)
            total = f"/{self.total}" if self.total else ""
            say(f"{label}: {int(self.n)}{total} files")
            return out

    return _Report


def _quiet_hub() -> None:
    try:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
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
    _quiet_hub()
    token = os.environ.get("HF_TOKEN") or None
    cache_dir = _cache_dir()
    say = progress or (lambda _s: None)
    offline = _offline()
    try:
        if offline:
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
        if offline or "LocalEntryNotFound" in kind or "offline" in str(e).lower():
            raise CheckpointError(
                f"{repo_id}: not in the local Hugging Face cache and the Hub is offline "
                "(unset HF_HUB_OFFLINE and connect once, or pass a local path)"
            ) from None
        if "RepositoryNotFound" in kind or "404" in str(e):
            raise CheckpointError(
                f"{repo_id}: no such repo on the Hub (or it is private: set HF_TOKEN)"
            ) from None
        first = (str(e).splitlines() or [kind])[0]
        raise CheckpointError(
            f"{repo_id}: cannot fetch from the Hub ({kind}: {first[:100]})"
        ) from None


def resolve(
    source: str | os.PathLike[str],
    hf_checkpoint: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Resolved:
    """A file, a local folder, or a Hub repo id -> the checkpoint file to read."""
    s = os.fspath(source)
    p = Path(s).expanduser()
    if p.is_file():
        folder = p.parent if has_tokenizer_files(p.parent) else None
        return Resolved(p, folder, str(p))
    if p.is_dir():
        return resolve_folder(p, hf_checkpoint)
    local_looking = s.endswith((".pt", ".bin", ".pth")) or Path(s.split("/")[0]).is_dir()
    if looks_like_repo_id(s) and not local_looking:
        return resolve_hub(s, hf_checkpoint, progress)
    raise CheckpointError(f"{s}: no such file or folder")
