"""`swamla_tui.load()`: the public Python API, used by the CLI and the UI alike.

Loading is: resolve the source, read the checkpoint safely, check every tensor's layout,
infer the config, build the model on the meta device and assign the weights (converted
to the running dtype, with the CPU decode layout where it helps), then warn about what
would make replies empty or wrong (NaN/Inf weights, vocabulary mismatches). A tensor the
model would not use refuses the load (`ignore_unknown=True` runs without it, with a
warning kept on the card); EMA copies are overlaid only when asked (`ema=True`).
`LoadedModel` (what `load` returns) lives in `loaded_model.py`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..base.errors import CheckpointError, SwamlaError, TokenizerError, one_line
from ..base.memory import reuse_freed_memory
from ..checkpoint import tensors as ckpt_tensors
from ..checkpoint.reader import RawCheckpoint, read_checkpoint_mapped, unpack
from ..checkpoint.selection import Selection
from ..checkpoint.sources import resolve
from ..checkpoint.tensors import check_state_dict, drop_mapped_pages
from ..engine.batch_run import BatchResult
from ..engine.options import EngineOptions
from ..model.formats import (
    config_notices,
    ema_overlay,
    engram_token_map,
    is_mask_key,
    parse_generation,
    resolve_model,
    stored_dtypes,
    unknown_weights_error,
)
from ..model.fuse import float32_cpu_layout
from ..model.quant import Quantize, fbgemm_full_range
from ..model.transformer import SWAMLA, wants_column_major
from .devices import check_quantize, parse_dtype, parse_quantize, pick_device
from .hf_export import is_export_folder, load_exported
from .loaded_model import LoadedModel


# ------------------------------------------------------------------------------ load()
def _build(
    raw: RawCheckpoint,
    device: torch.device,
    dtype: torch.dtype,
    swa_attention: str,
    max_length: int | None,
    tokenizer: Any,
    notices: list[str],
    source: str,
    mapped: bool = False,
    engine: EngineOptions | None = None,
    generation: str | None = None,
    engram_mapping: Sequence[int] | None = None,
    train_args: dict[str, Any] | None = None,
    ignore_unknown: bool = False,
    card_only: bool = False,
) -> LoadedModel:
    opts = engine or EngineOptions()
    args = {**raw.args, **(train_args or {})}
    wkey = str(raw.meta.get("weights_key", ""))
    cfg, weights, why = resolve_model(
        raw.state_dict, raw.args, wkey, generation, train_args, raw.top_keys
    )
    raw.meta["generation"] = f"{cfg.generation}: {why}"
    notices.extend(config_notices(cfg, args))
    stored, bf16_experts = stored_dtypes(weights)
    if len(stored) > 1 and not bf16_experts:  # bf16 routed experts: normal since Jan 30 2026
        to = str(dtype).removeprefix("torch.")
        notices.append(f"mixed stored dtypes ({', '.join(stored)}): converted whole to {to}")
    with torch.device("meta"):
        model = SWAMLA(cfg, swa_window=(swa_attention == "window"))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = set(shapes)
    # the head is tied to the embedding: a state dict may store it once, under wte
    missing = sorted(expected - set(weights) - {"lm_head.weight"})
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise CheckpointError(
            f"{source}: not an SWA-MLA state dict: missing {', '.join(missing[:3])}{more}"
        )
    unexpected = sorted(set(weights) - expected)
    if unexpected and not ignore_unknown:  # never run with trained weights dropped unnoticed
        raise unknown_weights_error(source, unexpected)
    if unexpected:
        more = f" (+{len(unexpected) - 3} more)" if len(unexpected) > 3 else ""
        raw.meta["ignored_weights"] = ", ".join(unexpected[:3]) + more
        notices.append(
            f"WARNING: running without {len(unexpected)} stored tensor(s) this version does "
            f"not know ({raw.meta['ignored_weights']}): outputs may differ from the trained "
            "model (--ignore-unknown-weights)"
        )
    floating = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    for k in expected & set(weights):
        want = shapes[k]
        if tuple(weights[k].shape) != want:
            raise CheckpointError(
                f"{source}: tensor {k} has shape {tuple(weights[k].shape)}, expected {tuple(want)}"
            )
        if k in floating and not weights[k].is_floating_point():
            raise CheckpointError(
                f"{source}: tensor {k} is stored as {str(weights[k].dtype).removeprefix('torch.')}"
                ": a weight must be floating point"
            )
    # CPU float32: tall/square matrices column-major (faster matrix-vector products;
    # in bfloat16 row-major is faster), written straight from the checkpoint so no
    # second copy of the weights is ever held
    layout = float32_cpu_layout(device, dtype, opts.cpu_layout)
    colmajor = layout == "column-major"
    tensors = {}
    bad: list[str] = []  # weights holding NaN/Inf (checked while each is still in cache)
    for k in sorted(expected):
        if k == "lm_head.weight":
            continue
        src = weights[k]
        t = src.to(device=device, dtype=dtype if src.is_floating_point() else None)
        if colmajor and wants_column_major(k, t.shape):
            t = t.t().contiguous().t()
        elif mapped and t.data_ptr() == src.data_ptr():
            # still the checkpoint's memory map: a trainer overwriting the file in place
            # would crash us (SIGBUS) mid-reply, so the weights get memory of their own
            t = t.clone()
        if mapped and t.data_ptr() != src.data_ptr():
            drop_mapped_pages(src)
        if not bad and not ckpt_tensors.all_finite(t):
            bad.append(k)
        tensors[k] = t
    try:
        model.load_state_dict(tensors, strict=False, assign=True)
    except RuntimeError as e:  # after the checks above: a layout the model cannot take
        raise CheckpointError(
            f"{source}: its weights do not fit the SWA-MLA model ({one_line(e, 100)})"
        ) from None
    if bad:
        notices.append(
            f"weights contain NaN or Inf (first: {bad[0]}): replies will be empty or garbage"
        )
    model.lm_head.weight = model.transformer.wte.weight  # type: ignore[union-attr,assignment]  # keep the tie after assign
    model.init_buffers(device)  # RoPE tables were created on meta
    model.eval().requires_grad_(False)
    if layout == "onednn":  # row-major weights, products in oneDNN (AMD CPUs)
        model.use_cpu_onednn_products()
    model.prepare(column_major=colmajor)  # fused products for decoding
    if device.type == "cpu" and dtype == torch.bfloat16 and opts.cpu_layout:
        model.use_cpu_bf16_packing()  # no-op where the CPU has bfloat16 instructions
    if device.type == "cpu" and opts.reuse_memory:  # after loading: its buffers were mapped
        reuse_freed_memory()
    if cfg.engram is not None and (tokenizer is not None or engram_mapping is not None):
        model.set_token_mapping(engram_token_map(cfg, tokenizer, engram_mapping, source))
    elif cfg.engram is not None and not card_only:
        engram_token_map(cfg, tokenizer, engram_mapping, source)  # the one-line refusal
    elif cfg.engram is not None:
        notices.append(
            f"Engram needs the tokenizer {cfg.tokenizer_name!r} to run (not found): "
            "pass --tokenizer PATH"
        )
    ml = min(int(max_length or cfg.block_size), cfg.block_size)
    if max_length and max_length > cfg.block_size and max_length != 2048:
        notices.append(f"max_length {max_length} is above block_size: using {cfg.block_size}")
    return LoadedModel(
        model,
        cfg,
        tokenizer,
        source=source,
        meta=raw.meta,
        max_length=ml,
        stored_dtype=", ".join(stored),
        notices=notices,
        engine_options=opts,
    )


def load(
    source: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = torch.float32,
    tokenizer: str | os.PathLike[str] | bool | None = None,
    hf_checkpoint: str | None = None,
    swa_attention: str = "full",
    max_length: int | None = 2048,
    progress: Callable[[str], None] | None = None,
    engine: EngineOptions | None = None,
    generation: str = "auto",
    engram_mapping: Sequence[int] | None = None,
    train_args: dict[str, Any] | None = None,
    tokenizer_optional: bool = False,
    quantize: Quantize | None = None,
    select: Selection | None = None,
    ema: bool = False,
    ignore_unknown: bool = False,
) -> LoadedModel:
    """Load a checkpoint file, a local folder or a Hub repo id (see the README).

    `tokenizer_optional`: a tokenizer that cannot be loaded becomes a notice and the model
    comes back without one (``--info``: the checkpoint is read once, not twice).

    `engine`: how to decode (CUDA graphs, compile, CPU layout); None means the defaults
    with the user's environment overrides (`EngineOptions.from_env()`).
    `generation`: "auto" (default) dates the checkpoint from its weights and saved config
    (formats v2 §1, formats G7 §12); "G1".."G7" overrides the two switches invisible in the
    weights (MLA q_pe rotation, dense-MLP SiLU half), e.g. for a bare state dict. `engram_mapping`: the
    token -> canonical id list an Engram model uses instead of the one built from the
    tokenizer. `train_args`: training-argument entries that override or complete the
    checkpoint's saved config (e.g. {"n_activated": 2}: the MoE top-k is in no weight).
    `quantize`: "int8" (the fastest exact path this CPU has), "int8-split", "int8-weight"
    (weight-only) or "int8-dynamic" stores the big projections and a copy of the head as
    int8 with per-output-channel scales (CPU only; model/quant.py).
    `select`: which checkpoint of a Hub repo or run folder (``--instruct``,
    ``--hf_checkpoint_strategy``, ``--nb_tok``; `swamla_tui.checkpoint.selection`).
    `ema`: overlay a G7 checkpoint's EMA copies (`ema.ema_params`) as the trainer's
    inference.py does by default; off by default because the trainer's EMA never moves
    from the step-0 weights (formats G7 §8). `ignore_unknown`: load even when the checkpoint
    holds tensors this version does not know (refused otherwise), with a kept warning.
    """
    t0 = time.perf_counter()
    opts = engine if engine is not None else EngineOptions.from_env()
    say = progress or (lambda _s: None)
    parse_generation(generation)  # a bad value fails before the file is read
    if swa_attention not in ("full", "window"):
        raise SwamlaError(f"swa_attention must be 'full' or 'window', not '{swa_attention}'")
    quant = parse_quantize(quantize)
    if is_export_folder(source):  # a folder written by --export: safetensors + config.json
        if ema:
            raise SwamlaError(f"{source}: --ema: an exported folder holds one set of weights")
        quant = check_quantize(quant, pick_device(device, []))
        lm = load_exported(
            source, device=device, dtype=dtype, tokenizer=tokenizer,
            hf_checkpoint=hf_checkpoint, swa_attention=swa_attention,
            max_length=max_length, progress=progress, ignore_unknown=ignore_unknown,
        )  # fmt: skip
        return _timed(_quantized(lm, quant, say), t0)
    notices: list[str] = []
    dev = pick_device(device, notices)
    dt = parse_dtype(dtype, dev)
    quant = check_quantize(quant, dev)
    if dev.type == "cpu" and dt == torch.float16:
        notices.append("float16 on the CPU is slow; bfloat16 or float32 are faster")
    say(f"Finding {source}")
    res = resolve(source, hf_checkpoint, progress, select)
    say(f"Reading {res.path.name}")
    obj, mapped = read_checkpoint_mapped(res.path)  # zip files are memory-mapped
    raw = unpack(obj, str(res.path))
    # SWA mask buffers were reduced to shape-only (meta) tensors by `unpack`: not weights
    check_state_dict({k: v for k, v in raw.state_dict.items() if not is_mask_key(k)}, str(res.path))
    _apply_ema(raw, ema, notices, res.label)
    tok: Any = None
    if tokenizer is not False:
        from .tokenizer import load_tokenizer

        say("Loading tokenizer")
        name = str(raw.args.get("tokenizer_name") or "openai-community/gpt2")
        spec = None if tokenizer is None or tokenizer is True else tokenizer
        beside = _tokenizer_beside(res.path, name)
        if spec is None and beside is not None:  # e.g. G7 fixtures: `tok384` next to the file
            spec = beside
        try:
            tok = load_tokenizer(spec, folder=res.folder, name=name)
        except TokenizerError as exc:
            if not tokenizer_optional:
                raise
            notices.append(str(exc))
    if tok is not None:
        _instruct_tokens(tok, raw, notices)
    say(f"Building model on {dev}")
    lm = _build(
        raw, dev, dt, swa_attention, max_length, tok, notices, res.label, mapped, opts,
        generation=generation, engram_mapping=engram_mapping, train_args=train_args,
        ignore_unknown=ignore_unknown, card_only=tokenizer_optional,
    )  # fmt: skip
    lm.notices.extend(_vocab_notices(tok, lm.config.vocab_size))
    return _timed(_quantized(lm, quant, say), t0)


def _timed(lm: LoadedModel, t0: float) -> LoadedModel:
    lm.load_seconds = time.perf_counter() - t0  # the per-reply timings show it
    return lm


def _apply_ema(raw: RawCheckpoint, ema: bool, notices: list[str], source: str) -> None:
    """The trained weights by default; with `ema`, the EMA copies over them (formats G7 §8)."""
    if raw.ema is None:
        if ema:
            raise CheckpointError(f"{source}: --ema: this checkpoint carries no EMA weights")
        return
    check_state_dict(raw.ema, source)
    if ema:
        raw.state_dict = ema_overlay(raw.state_dict, raw.ema, source)
        raw.meta["weights"] = "EMA overlay (as the trainer's inference.py; embedding raw)"
        notices.append(
            "running the EMA weights (--ema): in the trainer's 2026 code they are the "
            "step-0 weights, never updated"
        )
    else:
        raw.meta["weights"] = "trained (the file also carries EMA weights: --ema uses them)"
        notices.append(
            "this file carries EMA weights (ema.ema_params); running the trained weights "
            "(--ema runs the EMA copies, as the trainer's inference.py does)"
        )
    raw.ema = None  # not needed any more: let them be freed


_CHATML = ("<|im_start|>", "<|im_end|>")


def _instruct_tokens(tok: Any, raw: RawCheckpoint, notices: list[str]) -> None:
    """An instruct checkpoint (formats G7 §9) has V0 + 2 rows: the trainer gave its tokenizer the
    two ChatML tokens as ids V0 and V0 + 1. A base tokenizer (a local checkpoint names
    only the base one) gets them too, so ChatML is detected and the ids line up."""
    if raw.meta.get("checkpoint_type") != "instruct":
        return
    wte = raw.state_dict.get("transformer.wte.weight")
    vocab = tok.get_vocab() if hasattr(tok, "get_vocab") else {}
    if wte is None or wte.ndim != 2 or all(t in vocab for t in _CHATML):
        return
    if len(tok) + 2 != int(wte.shape[0]) or not hasattr(tok, "add_special_tokens"):
        notices.append(
            f"instruct checkpoint with {int(wte.shape[0])} token rows, but the tokenizer has "
            f"{len(tok)} tokens and no ChatML tokens: pass the instruct tokenizer (--tokenizer)"
        )
        return
    tok.add_special_tokens({"additional_special_tokens": list(_CHATML)})
    notices.append(
        f"instruct checkpoint: the ChatML tokens {_CHATML[0]} {_CHATML[1]} were added to the "
        f"tokenizer as ids {len(tok) - 2} and {len(tok) - 1}, as the trainer did"
    )


def _tokenizer_beside(ckpt: Any, name: str) -> str | None:
    """A tokenizer folder named like `tokenizer_name`, next to the checkpoint file."""
    from pathlib import Path

    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    folder = Path(ckpt).parent / name
    from ..checkpoint.sources import has_tokenizer_files

    return str(folder) if folder.is_dir() and has_tokenizer_files(folder) else None


def _quantized(lm: LoadedModel, quant: Quantize | None, say: Callable[[str], None]) -> LoadedModel:
    if quant is None:
        return lm
    say(f"Quantizing weights to {quant}")
    n = lm.model.quantize(quant)
    how = {
        "int8-split": "int8-split: weights, and inputs per token in two int8 parts",
        "int8-weight": "int8-weight: weight-only",
    }.get(quant, f"{quant}: weights and per-token {8 if fbgemm_full_range() else 7}-bit inputs")
    lm.notices.append(f"{n} weight matrices quantized to int8 ({how}, per-channel scales)")
    return lm


def _vocab_notices(tok: Any, model_vocab: int) -> list[str]:
    if tok is None:
        return []
    n = len(tok)
    if n > model_vocab:
        return [
            f"tokenizer has {n} tokens but the model only {model_vocab}: "
            "prompts using the extra tokens are refused"
        ]
    if n < model_vocab:
        return [
            f"the model has {model_vocab} token ids but the tokenizer only {n}: "
            "generated ids above the tokenizer's decode to nothing"
        ]
    return []


__all__ = ["load", "LoadedModel", "BatchResult", "parse_dtype", "pick_device"]
