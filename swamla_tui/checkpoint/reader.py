"""Reading SWA-MLA checkpoints safely, and recognising what they contain.

A checkpoint is untrusted data. `read_checkpoint` (1) refuses special files and checks the
archive (`ckpt.archive`: the exact pickle member torch loads, size caps, compressed
records, declared sizes), (2) scans every pickle's opcodes and refuses anything outside the
allow-list before anything is unpickled (`ckpt.safety`), then (3) unpickles with
`torch.load(weights_only=True)` (or, for pickle protocols torch's reader cannot parse, a
restricted unpickler: `ckpt.unpickler`), with torchao's optimizer-state classes bound to
inert stand-ins so torchao is never needed or imported. Zip-format files are
memory-mapped, so optimizer moments are never read into memory.
`unpack` recognises the container (training checkpoint, hub file, bare state dict), and
for the 2026 trainer (formats G7 §1-§2) merges its two config dicts and keeps its EMA copy.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..base.errors import CheckpointError, UnsafeCheckpointError, one_line
from ..model.formats import prune_state_dict
from . import looks_like_checkpoint
from .archive import Archive, inspect
from .safety import numpy_globals, stand_ins
from .sources import (  # noqa: F401 - re-exported: the public names of this module
    TOKENIZER_FILES,
    Resolved,
    file_progress,
    has_tokenizer_files,
    hub_folder_tokens,
    looks_like_repo_id,
    resolve,
    resolve_folder,
    resolve_hub,
    special_file_kind,
)
from .unpickler import restricted_pickle_module


def _reason(msg: str) -> str:
    """The informative line of a torch.load error (skips its generic weights_only preamble)."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    useful = [
        ln
        for ln in lines
        if not ln.startswith(("Weights only load failed", "Check the documentation", "Please file"))
    ]
    return ((useful or lines or ["unreadable"])[0])[:100]


# raw library messages that mean something specific about the file, in the user's terms
_MEANINGS = (
    ("invalid data type", "a tensor in it is built from data that is not numbers"),
    ("setStorage", "a tensor in it reaches past its storage"),
    ("storage has wrong size", "a tensor's data is shorter than the file declares"),
    ("can't allocate memory", "it declares tensors larger than this machine's memory"),
)


def _explain(e: BaseException) -> str:
    line = one_line(e, 100)
    for needle, meaning in _MEANINGS:
        if needle in str(e):
            return f"{meaning} ({line})"
    return (
        f"{type(e).__name__}: {line}" if isinstance(e, (TypeError, IndexError, KeyError)) else line
    )


def _check_file(p: Path) -> None:
    kind = special_file_kind(p)
    if kind is not None:
        raise CheckpointError(f"{p}: is {kind}, not a checkpoint file (refused, not opened)")
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder, not a checkpoint file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: empty file")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if not looks_like_checkpoint(head):
        raise CheckpointError(
            f"{p}: not a PyTorch checkpoint (neither a zip archive nor a pickle; it starts "
            f"with {head!r})"
        )


def _torch_load(p: Path, arc: Archive) -> Any:
    names = arc.report.globals
    mmap = arc.is_zip and not arc.compressed  # compressed records must be decompressed
    if arc.report.protocol <= 2:
        allow: list[Any] = [*stand_ins(names), *numpy_globals(names)]
        with torch.serialization.safe_globals(allow):
            return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    return torch.load(  # protocol 3+: torch's weights_only reader cannot parse it
        p, map_location="cpu", weights_only=False, mmap=mmap,
        pickle_module=restricted_pickle_module(),
    )  # fmt: skip


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Unpickle a checkpoint file safely; zip-format files are memory-mapped."""
    return read_checkpoint_mapped(path)[0]


def read_checkpoint_mapped(path: str | Path) -> tuple[dict[str, Any], bool]:
    """`read_checkpoint`, and whether its tensors are a memory map of the file."""
    p = Path(path)
    _check_file(p)
    arc = inspect(p)
    try:
        obj = _torch_load(p, arc)
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", msg)
        if m:
            raise UnsafeCheckpointError(
                f"{p}: refused: the file references '{m.group(1)}', which a checkpoint never "
                "needs (nothing was run)"
            ) from None
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({_reason(msg)})") from None
    except MemoryError:
        raise CheckpointError(
            f"{p}: it declares tensors larger than this machine's memory"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as e:
        first = one_line(e, 100)
        if "central directory" in first or isinstance(e, EOFError) or "truncated" in first.lower():
            raise CheckpointError(f"{p}: the file is truncated or corrupt ({first})") from None
        raise CheckpointError(
            f"{p}: cannot be read as a PyTorch checkpoint ({_explain(e)})"
        ) from None
    except Exception as e:  # noqa: BLE001 - the unpickler raises IndexError etc. on junk
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({_explain(e)})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: holds a {type(obj).__name__}, not a checkpoint dict")
    return obj, arc.is_zip and not arc.compressed


# ----------------------------------------------------------------------------- containers
@dataclass
class RawCheckpoint:
    state_dict: dict[str, torch.Tensor]
    args: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # step, total_tokens, val_loss
    top_keys: tuple[str, ...] = ()  # the container's own keys (they date a checkpoint)
    ema: dict[str, torch.Tensor] | None = None  # G7 local checkpoints: `ema.ema_params`


# G7 `config` (the model dataclass) names -> the command-line names `args` uses
_DATACLASS_TO_CLI = {
    k: f"mla_{k}"
    for k in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
}


def merged_config(cli: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """G7 local checkpoints: `args` (command line) and `config` (the model dataclass) in one
    dict; the dataclass wins where both name the same thing (formats G7 §2.1), and its names
    are also given under the command-line spelling the rest of the loader reads."""
    out = {**cli, **model}
    for k, cli_name in _DATACLASS_TO_CLI.items():
        if model.get(k) is not None:
            out[cli_name] = model[k]
    return out


def _tensors(d: Any) -> dict[str, torch.Tensor]:
    if not isinstance(d, dict):
        return {}
    return {
        strip_prefixes(k): v
        for k, v in d.items()
        if isinstance(k, str) and isinstance(v, torch.Tensor)
    }


_PREFIXES = ("module.", "_orig_mod.")


def _plain_number(v: Any) -> int | float | None:
    """A metadata number as a Python int/float (training code often logs numpy scalars)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)  # np.float64 is a float subclass: keep a plain float
    item = getattr(v, "item", None)  # numpy / 0-d torch scalars
    if callable(item) and getattr(v, "ndim", 1) == 0:
        out = item()
        return out if isinstance(out, (int, float)) and not isinstance(out, bool) else None
    return None


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
    if isinstance(obj.get("model_state_dict"), dict):  # formats v2 §2: model_state_dict, else model
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
    clean = prune_state_dict(_tensors(sd))
    config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    cli = obj.get("args") if isinstance(obj.get("args"), dict) else None
    args = merged_config(cli, dict(config or {})) if cli is not None else dict(config or {})
    meta: dict[str, Any] = {"format": kind, "weights_key": wkey}
    for k in ("step", "total_tokens", "val_loss", "total_tokens_seen"):
        v = _plain_number(obj.get(k))
        if v is not None:
            meta["total_tokens" if k == "total_tokens_seen" else k] = v
    for k in ("pretrain_tokens", "instruct_tokens"):  # formats G7 §1.1
        v = _plain_number(obj.get(k))
        if v is not None:
            meta[k] = v
    if isinstance(obj.get("checkpoint_type"), str):
        meta["checkpoint_type"] = obj["checkpoint_type"][:20]
    ema = None
    box = obj.get("ema")
    if isinstance(box, dict) and isinstance(box.get("ema_params"), dict):
        ema = prune_state_dict(_tensors(box["ema_params"])) or None
        decay = _plain_number(box.get("decay"))
        if ema is not None and decay is not None:
            meta["ema_decay"] = decay
    top = tuple(k for k in obj if isinstance(k, str))
    return RawCheckpoint(clean, args, meta, top, ema)
