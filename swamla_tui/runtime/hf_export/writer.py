"""`export_checkpoint`: a loaded model as a safetensors folder (no pickles, no optimizer).

The folder holds:
- `model.safetensors`: the state dict (persistent buffers included) in float32 or
  bfloat16; a tensor that shares memory with an earlier one (the head tied to the
  embedding) is stored once and named in `config.json`'s `tied_weights`;
- `config.json`: `swamla_model` (every dimension: `ModelConfig.to_dict()`, layer kinds and
  tokenizer name included), `swamla_engram_map` (Engram's token map, which no weight holds), `provenance` (source, step, tokens, val_loss, ...), and the
  transformers fields (`model_type`, `architectures`, `auto_map`, ...);
- the tokenizer files (`tokenizer.save_pretrained`), with `tokenizer_config.json` naming
  transformers' own `PreTrainedTokenizerFast` and no `auto_map`: only the model needs
  remote code, so a tokenizer-only load must never be offered the folder's Python files
  (`_plain_tokenizer_config`);
- `configuration_swamla.py`, `modeling_swamla.py` and flat copies of the model code, so
  `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` works offline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..._version import __version__
from ...base.errors import SwamlaError
from .flatten import flatten_into

if TYPE_CHECKING:  # pragma: no cover
    from ..loaded_model import LoadedModel

ExportDtype = Literal["float32", "bfloat16"]
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
REMOTE_DIR = Path(__file__).resolve().parent / "remote"
REMOTE_FILES = ("configuration_swamla.py", "modeling_swamla.py", "swamla_dict_config.py")
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class ExportError(SwamlaError):
    """The export folder cannot be written (not empty, not writable, bad dtype)."""


def _weights(lm: LoadedModel, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Contiguous CPU tensors by name, each storage once; and {alias: stored name}."""
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    by_ptr: dict[tuple[int, tuple[int, ...], tuple[int, ...]], str] = {}
    for name, t in lm.model.state_dict().items():
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()))
        if t.numel() and key in by_ptr:
            tied[name] = by_ptr[key]
            continue
        by_ptr[key] = name
        t = t.detach().to("cpu", dtype=dtype if t.is_floating_point() else t.dtype)
        tensors[name] = t.contiguous()  # the CPU decode layout keeps some column-major
    return tensors, tied


def _config(lm: LoadedModel, dtype: str, tied: dict[str, str]) -> dict[str, Any]:
    tok = lm.tokenizer
    provenance: dict[str, Any] = {
        "source": lm.source,
        "format": lm.meta.get("format"),
        "step": lm.meta.get("step"),
        "total_tokens": lm.meta.get("total_tokens"),
        "val_loss": lm.meta.get("val_loss"),
        "checkpoint_type": lm.meta.get("checkpoint_type"),
        "pretrain_tokens": lm.meta.get("pretrain_tokens"),
        "instruct_tokens": lm.meta.get("instruct_tokens"),
        "weights": lm.meta.get("weights"),
        "exported_from_dtype": str(lm.dtype).removeprefix("torch."),
        "tokenizer": getattr(tok, "name_or_path", None) if tok is not None else None,
        "exported_by": f"swamla-tui {__version__}",
    }
    eos = getattr(tok, "eos_token_id", None) if tok is not None else None
    bos = getattr(tok, "bos_token_id", None) if tok is not None else None
    return {
        "model_type": "swamla",
        "architectures": ["SwamlaForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_swamla.SwamlaConfig",
            "AutoModelForCausalLM": "modeling_swamla.SwamlaForCausalLM",
        },
        "swamla_export": FORMAT_VERSION,
        "swamla_model": lm.config.to_dict(),
        # Engram's token -> canonical id map: built from the tokenizer, in no weight
        "swamla_engram_map": (
            lm.model.engram_map.cpu().tolist() if lm.model.engram_map is not None else None
        ),
        "swa_attention": "window" if getattr(lm.model, "swa_window", False) else "full",
        "tied_weights": tied,
        "provenance": provenance,
        "vocab_size": lm.config.vocab_size,
        "hidden_size": lm.config.n_embd,
        "num_hidden_layers": lm.config.n_layer,
        "num_attention_heads": lm.config.n_head,
        "max_position_embeddings": lm.config.block_size,
        "tie_word_embeddings": "lm_head.weight" in tied,
        "use_cache": False,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


# keys save_pretrained writes that describe the saving session, not the tokenizer
_SESSION_KEYS = ("auto_map", "is_local", "local_files_only", "_commit_hash")


def _plain_tokenizer_config(folder: Path) -> None:
    """Name a built-in tokenizer class in `tokenizer_config.json` (transformers 5 writes
    its internal ``TokenizersBackend``, which transformers 4 cannot import) and drop any
    ``auto_map``. Transformers 4 then builds the tokenizer from ``tokenizer.json`` with no
    question asked; transformers 5's `AutoTokenizer` reads config.json first and still
    asks about the model's code unless ``trust_remote_code`` is given either way."""
    path = folder / "tokenizer_config.json"
    if not (folder / "tokenizer.json").is_file() or not path.is_file():
        return  # a slow tokenizer: its own built-in class stays
    cfg = json.loads(path.read_text(encoding="utf-8"))
    for key in _SESSION_KEYS:
        cfg.pop(key, None)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def is_export_folder(path: str | os.PathLike[str]) -> bool:
    """A folder written by `export_checkpoint` (config.json says so and the weights exist)."""
    p = Path(path).expanduser()
    if not (p / CONFIG).is_file() or not (p / WEIGHTS).is_file():
        return False
    try:
        return "swamla_export" in json.loads((p / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_export_folder(out):
        raise ExportError(f"{out}: the folder is not empty (and not an earlier export)")


def export_checkpoint(
    lm: LoadedModel, out_dir: str | os.PathLike[str], *, dtype: ExportDtype | str = "float32"
) -> Path:
    """Write `lm` to `out_dir` (created; an earlier export there is replaced)."""
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ExportError(f"export dtype must be float32 or bfloat16, not '{dtype}'")
    dt = _DTYPES[key]
    name = str(dt).removeprefix("torch.")
    out = Path(out_dir).expanduser()
    _check_target(out)
    from safetensors.torch import save_file

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp_name:
            tmp = Path(tmp_name)
            tensors, tied = _weights(lm, dt)
            meta = {"format": "pt", "swamla_export": str(FORMAT_VERSION)}
            save_file(tensors, str(tmp / WEIGHTS), metadata=meta)
            del tensors
            cfg = _config(lm, name, tied)
            (tmp / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
            flatten_into(tmp)
            for fname in REMOTE_FILES:
                if (tmp / fname).exists():
                    raise ExportError(f"model module {fname} clashes with the remote-code file")
                shutil.copyfile(REMOTE_DIR / fname, tmp / fname)
            if lm.tokenizer is not None:
                lm.tokenizer.save_pretrained(str(tmp))
                _plain_tokenizer_config(tmp)
            # safetensors writes 0600: every file gets the mode a plain new file gets (0644
            # under umask 022), as config.json was written
            mode = (tmp / CONFIG).stat().st_mode & 0o777
            for f in tmp.iterdir():  # each file replaced atomically; config.json last
                f.chmod(mode)
                if f.name != CONFIG:
                    os.replace(f, out / f.name)
            os.replace(tmp / CONFIG, out / CONFIG)
    except OSError as e:
        raise ExportError(f"{out}: cannot write ({e.strerror or type(e).__name__})") from None
    return out
