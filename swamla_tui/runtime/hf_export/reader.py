"""`load_exported`: an export folder back into a `LoadedModel`.

The model is built from `config.json` (no inference from shapes: the export says what
it is), on the meta device, and the weights are taken from `model.safetensors` through
safetensors' memory map: no pickle is read, nothing is unpickled, and a tensor already in
the wanted dtype and layout is used in place, straight from the page cache (a bfloat16
export run in bfloat16 loads without copying anything). The file is therefore mapped
while the model lives: re-exporting replaces files by rename (safe), but overwriting
`model.safetensors` in place under a running model would crash it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...base.errors import CheckpointError
from ...base.paths import require_regular_file
from .schema import check_weights_fit, model_config, read_config_file, tied_aliases
from .writer import CONFIG, FORMAT_VERSION, WEIGHTS

if TYPE_CHECKING:  # pragma: no cover
    from ..loaded_model import LoadedModel

__all__ = ["load_exported", "model_config", "read_export_config"]


def read_export_config(folder: Path) -> dict[str, Any]:
    """config.json, read bounded (`schema.read_config_file`), of a format this version reads."""
    path = folder / CONFIG
    data = read_config_file(path)
    if not isinstance(data.get("swamla_model"), dict):
        raise CheckpointError(f"{path}: not a swamla-tui export (no 'swamla_model')")
    version = data.get("swamla_export")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: export format {str(version)[:20]!r} is newer than this swamla-tui understands"
        )
    return data


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    if not path.exists():
        raise CheckpointError(f"{path.parent}: no {WEIGHTS}")
    require_regular_file(path, "weights file", error=CheckpointError)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: not a readable safetensors file ({first[:90]})") from None


def _tokenizer(spec: str | os.PathLike[str] | None, folder: Path, name: str) -> Any:
    """The folder's own tokenizer files, read without ever running the folder's code.

    AutoTokenizer would read config.json, find the `auto_map` of the remote code and ask
    on stdin whether to run it (or wait for an answer in the app): a neutral config and
    `trust_remote_code=False` keep it to the tokenizer files.
    """
    from ...base.errors import TokenizerError
    from ...checkpoint.sources import has_tokenizer_files
    from ..tokenizer import load_tokenizer

    if spec is not None or not has_tokenizer_files(folder):
        return load_tokenizer(spec, folder=None, name=name)
    from transformers import AutoTokenizer, PretrainedConfig
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # transformers: untyped
    try:
        return AutoTokenizer.from_pretrained(
            str(folder), config=PretrainedConfig(), trust_remote_code=False, local_files_only=True
        )
    except Exception as e:  # noqa: BLE001 - transformers raises many types
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise TokenizerError(
            f"{folder}: its tokenizer files cannot be loaded ({first[:90]}): pass --tokenizer PATH"
        ) from None


def load_exported(
    out_dir: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = torch.float32,
    tokenizer: str | os.PathLike[str] | bool | None = None,
    swa_attention: str = "full",
    max_length: int | None = 2048,
    progress: Callable[[str], None] | None = None,
    hf_checkpoint: str | None = None,
    ignore_unknown: bool = False,
) -> LoadedModel:
    """Same arguments and result as `swamla_tui.load`, for a folder from `export_checkpoint`."""
    from ...base.errors import SwamlaError, one_line
    from ...checkpoint.tensors import drop_mapped_pages
    from ...model.fuse import float32_cpu_layout
    from ...model.transformer import SWAMLA, wants_column_major
    from ..devices import parse_dtype, pick_device
    from ..loaded_model import LoadedModel

    say = progress or (lambda _s: None)
    folder = Path(out_dir).expanduser()
    if hf_checkpoint:
        raise SwamlaError(f"{folder}: an exported folder has no checkpoint subfolders")
    if swa_attention not in ("full", "window"):
        raise SwamlaError(f"swa_attention must be 'full' or 'window', not '{swa_attention}'")
    notices: list[str] = []
    dev = pick_device(device, notices)
    dt = parse_dtype(dtype, dev)
    say(f"Reading {folder / CONFIG}")
    data = read_export_config(folder)
    cfg = model_config(data, str(folder))
    tok: Any = None
    if tokenizer is not False:
        say("Loading tokenizer")
        spec = None if tokenizer is None or tokenizer is True else tokenizer
        tok = _tokenizer(spec, folder, cfg.tokenizer_name)
    weights = _tensors(folder / WEIGHTS)
    check_weights_fit(cfg, {k: tuple(v.shape) for k, v in weights.items()}, str(folder))
    say(f"Building model on {dev}")
    try:
        with torch.device("meta"):
            model = SWAMLA(cfg, swa_window=swa_attention == "window")
    except Exception as e:  # noqa: BLE001 - a combination of fields the checks did not foresee
        raise CheckpointError(
            f"{folder}: {CONFIG} describes a model this version cannot build ({one_line(e, 100)})"
        ) from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    params = {k: tuple(v.shape) for k, v in model.named_parameters(remove_duplicate=False)}
    tied = tied_aliases(data, params, {k: tuple(v.shape) for k, v in weights.items()}, str(folder))
    missing = sorted(set(expected) - set(weights) - set(tied))
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise CheckpointError(f"{folder}: {WEIGHTS} lacks {', '.join(missing[:3])}{more}")
    unexpected = sorted(set(weights) - set(expected))
    if unexpected and not ignore_unknown:  # as `swamla_tui.load`: never drop weights unnoticed
        from ...model.formats import unknown_weights_error

        raise unknown_weights_error(str(folder), unexpected)
    meta: dict[str, Any] = {"format": "safetensors export"}
    if unexpected:
        more = f" (+{len(unexpected) - 3} more)" if len(unexpected) > 3 else ""
        meta["ignored_weights"] = ", ".join(unexpected[:3]) + more
        notices.append(
            f"WARNING: running without {len(unexpected)} stored tensor(s) this version does "
            f"not know ({meta['ignored_weights']}) (--ignore-unknown-weights)"
        )
    layout = float32_cpu_layout(dev, dt, os.environ.get("SWAMLA_CPU_LAYOUT", "1") != "0")
    colmajor = layout == "column-major"  # as `swamla_tui.load` decides
    stored = sorted({str(v.dtype).removeprefix("torch.") for v in weights.values()})
    tensors: dict[str, torch.Tensor] = {}
    for k in expected:
        if k not in weights:
            continue
        src = weights.pop(k)
        if tuple(src.shape) != expected[k]:
            raise CheckpointError(
                f"{folder}: tensor {k} has shape {tuple(src.shape)}, expected {expected[k]}"
            )
        t = src.to(device=dev, dtype=dt if src.is_floating_point() else None)
        if colmajor and wants_column_major(k, t.shape):
            t = t.t().contiguous().t()
        if t.data_ptr() != src.data_ptr():
            drop_mapped_pages(src)  # copied: its file pages need not stay resident
        tensors[k] = t
    model.load_state_dict(tensors, strict=False, assign=True)
    for alias, target in tied.items():  # re-tie (the head to the embedding)
        owner, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(owner), attr, model.get_parameter(target))
    model.init_buffers(dev)
    if cfg.engram is not None:
        emap = data.get("swamla_engram_map")
        if not isinstance(emap, list) or len(emap) != cfg.vocab_size:
            raise CheckpointError(f"{folder}: {CONFIG} lacks the Engram token map")
        if not all(type(v) is int and 0 <= v < 2**31 for v in emap):
            raise CheckpointError(
                f"{folder}: {CONFIG} 'swamla_engram_map' must hold token ids (integers >= 0)"
            )
        from ...model.token_map import mapping_tensor

        model.set_token_mapping(mapping_tensor(emap, cfg.vocab_size))
    model.eval().requires_grad_(False)
    if layout == "onednn":
        model.use_cpu_onednn_products()
    if dev.type == "cpu" and dt == torch.bfloat16 and os.environ.get("SWAMLA_CPU_LAYOUT") != "0":
        model.use_cpu_bf16_packing()  # as `swamla_tui.load` does: both compute the same
    ml = min(int(max_length or cfg.block_size), cfg.block_size)
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        prov = {}
    for k in ("step", "total_tokens", "val_loss", "pretrain_tokens", "instruct_tokens"):
        if isinstance(prov.get(k), (int, float)):
            meta[k] = prov[k]
    for k in ("checkpoint_type", "weights"):
        if isinstance(prov.get(k), str):
            meta[k] = prov[k][:120]
    if isinstance(prov.get("source"), str) and prov["source"]:
        meta["exported_from"] = prov["source"][:300]
    lm = LoadedModel(
        model,
        cfg,
        tok,
        source=str(folder),
        meta=meta,
        max_length=ml,
        stored_dtype=", ".join(stored),
        notices=notices,
    )
    if tok is not None and len(tok) > cfg.vocab_size:
        lm.notices.append(f"tokenizer has {len(tok)} tokens but the model only {cfg.vocab_size}")
    return lm
