"""Reading SWA-MLA checkpoints safely, and recognising what they contain.

A checkpoint is untrusted data. `read_checkpoint` refuses special files, then parses the
file once, itself (`ckpt.archive`): our zip reader (`ckpt.zipread`), our unpickler
(`ckpt.pickle_vm`) with an allow-list by meaning (`ckpt.meanings`, `ckpt.safety`) and a
memory budget; torch never reads the file. torchao's optimizer states become inert
stand-ins, so torchao is never needed or imported. Zip-format files are memory-mapped,
so optimizer moments are never read into memory.
`unpack` recognises the container (training checkpoint, hub file, bare state dict), and
for the 2026 trainer (formats G7 §1-§2) merges its two config dicts and keeps its EMA copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..base.errors import CheckpointError
from ..model.formats import prune_state_dict
from . import looks_like_checkpoint
from .archive import load_file
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


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Unpickle a checkpoint file safely; zip-format files are memory-mapped."""
    return read_checkpoint_mapped(path)[0]


def read_checkpoint_mapped(path: str | Path) -> tuple[dict[str, Any], bool]:
    """`read_checkpoint`, and whether its tensors are a memory map of the file."""
    p = Path(path)
    _check_file(p)
    obj, mapped = load_file(p)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: holds a {type(obj).__name__}, not a checkpoint dict")
    return obj, mapped


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
