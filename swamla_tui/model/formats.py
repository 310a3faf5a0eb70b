"""Format generations G1-G6 and key handling (v2 spec §1, §2).

Two semantic switches are invisible in the weights: MLA's q_pe rotation (by head index in
G1-G4, by position in G5-G6) and the dense-MLP SiLU half (second half in G1-G5, first in G6).
`detect.py` decides them from the layer kinds and the saved argument dict, in the spec's
order; a bare state dict has no argument dict, so `resolve_model` lets the caller override
the answer.

Also here: which stored tensors are skipped (statistics, masks, FP8 metadata, the tied head)
and the in-memory normalisation of the weights the model reads (DyT `alpha` of shape (),
old-layout experts transposed to the new layout).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..base.errors import CheckpointError
from .config import GENERATIONS, Generation, ModelConfig
from .detect import bf16_experts, detect_generation, is_mask_key
from .infer import infer_config
from .token_map import mapping_tensor, token_mapping

__all__ = [
    "adapt_weights",
    "config_notices",
    "detect_generation",
    "engram_token_map",
    "is_mask_key",
    "model_card_lines",
    "parse_generation",
    "prune_state_dict",
    "resolve_model",
    "stored_dtypes",
]

# statistics, FP8 scaling metadata and the tied head: never read (v2 §2)
_SKIP_SUFFIXES = (
    "ffn.router.load_history",
    "ffn.router.update_count",
    "._extra_state",
)


def prune_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the keys a loader must skip; keep SWA mask buffers as shape-only meta tensors.

    `lm_head.weight` is tied to `transformer.wte.weight` and dropped. `expert_bias` and
    `engram.embeddings.hash_seeds` are kept: both change outputs.
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k == "lm_head.weight" or k.endswith(_SKIP_SUFFIXES):
            continue
        if is_mask_key(k):
            v = torch.empty(v.shape, dtype=v.dtype, device="meta")  # 16 MB per layer otherwise
        out[k] = v
    return out


def parse_generation(value: str | None) -> Generation | None:
    """'auto' / None -> None (detect); 'G1'..'G6' (any case) -> that generation."""
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    v = str(value).strip().upper()
    for g in GENERATIONS:
        if v == g:
            return g
    raise CheckpointError(
        f"generation must be auto or one of {', '.join(GENERATIONS)}, not '{value}'"
    )


def adapt_weights(sd: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The tensors as the model holds them (views, no copies).

    - DyT `alpha` is a 0-dimensional scalar as the trainer stores it; the model keeps [1].
    - Old-layout routed experts ([E, 2F, D] / [E, D, F]) become the new layout
      ([E, D, 2F] / [E, F, D]) so that one code path computes both (v2 §6.4).
    """
    old = cfg.moe is not None and cfg.moe.expert_layout == "old"
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if is_mask_key(k):
            continue
        if k.endswith(".alpha") and v.ndim == 0:
            v = v.reshape(1)
        elif old and (
            k.endswith("ffn.experts.gate_up_weight") or k.endswith("ffn.experts.down_weight")
        ):
            v = v.transpose(1, 2)
        out[k] = v
    return out


def stored_dtypes(sd: Mapping[str, torch.Tensor]) -> tuple[list[str], bool]:
    """Floating dtypes of the weights, and whether a mix is only HEAD's bf16 experts."""
    names = sorted(
        {
            str(v.dtype).removeprefix("torch.")
            for k, v in sd.items()
            if v.is_floating_point() and not is_mask_key(k)
        }
    )
    return names, bf16_experts(sd)


def resolve_model(
    sd: Mapping[str, torch.Tensor],
    args: Mapping[str, Any],
    weights_key: str = "",
    generation: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[ModelConfig, dict[str, torch.Tensor], str]:
    """Config, the tensors the model loads, and why this generation (one line).

    `args` is the checkpoint's saved argument dict (it dates the checkpoint); `overrides`
    (the user's) replace or complete its entries for the dimensions only.
    `generation`: None / "auto" detects it; "G1".."G6" overrides the semantic switches
    (q_pe rotation, dense-MLP SiLU half) for a bare state dict whose date is unknown.
    """
    want = parse_generation(generation)
    found, why = detect_generation(sd, args, weights_key)
    args = {**args, **(overrides or {})}
    if want is not None and want != found:
        why = f"set by the user (detected {found}: {why})"
    elif want is not None:
        why = f"set by the user, as detected ({why})"
    cfg = infer_config(sd, args, generation=want or found)
    return cfg, adapt_weights(sd, cfg), why


def config_notices(cfg: ModelConfig, args: Mapping[str, Any]) -> list[str]:
    """What the weights could not tell and the argument dict did not say either."""
    out = []
    if cfg.moe is not None and not any(k in args for k in ("n_activated", "latent_n_activated")):
        out.append(
            f"MoE top-{cfg.moe.top_k} is the trainer's default (the checkpoint has no config): "
            "pass train_args={'n_activated': k} if it was trained with another"
        )
    return out


def engram_token_map(cfg: ModelConfig, tokenizer: Any, mapping: Any, source: str) -> torch.Tensor:
    """The token -> canonical id map of an Engram model: supplied, else from the tokenizer."""
    if mapping is not None:
        return mapping_tensor(mapping, cfg.vocab_size)
    if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
        layers = ", ".join(map(str, cfg.engram.layers)) if cfg.engram else "?"
        raise CheckpointError(
            f"{source}: Engram n-gram memory (layer {layers}) maps tokens through the "
            "tokenizer: load it with its tokenizer (not tokenizer=False / --no-tokenizer)"
        )
    return token_mapping(tokenizer.get_vocab(), cfg.vocab_size)


def model_card_lines(c: ModelConfig, swa_windowed: bool) -> dict[str, str]:
    """The architecture lines of `LoadedModel.card()` (for --info and /info)."""
    out: dict[str, str] = {}
    if c.n_swa:
        if c.swa_flash:
            mode = "flash SWA: per-layer window applied (as trained), no sinks"
        else:
            mode = "windowed" if swa_windowed else "full causal (as trained)"
        out["SWA"] = f"window {c.swa_window}, sinks {c.swa_sink_size}, attention {mode}"
    if c.n_deltanet and c.deltanet is not None:
        d = c.deltanet
        out["DeltaNet"] = (
            f"{d.n_head} heads of {d.head_dim} (width {d.proj_dim}), "
            f"latent {d.latent_dim or 'off'}, shared q/k {'on' if d.share_qk else 'off'}, "
            f"conv {d.conv_kernel}" + (", WeDLM position wrapper" if d.wedlm else "")
        )
    if c.n_mla:
        ranks = sorted({c.kv_rank(i) for i, k in enumerate(c.layer_kinds) if k == "mla"})
        out["MLA"] = (
            f"r {'/'.join(map(str, ranks))}, dn {c.qk_nope_head_dim}, dr {c.qk_rope_head_dim}, "
            f"dv {c.v_head_dim}, q_lora {c.q_lora_rank or 'off'}, q_pe by "
            + ("position" if c.q_pe_by_position else "head index")
        )
    if c.moe is not None:
        m = c.moe
        out["MoE"] = (
            f"{'latent' if m.latent else 'standard'} (width {m.width}): {m.n_experts} routed "
            f"experts of {m.expert_dim}, top-{m.top_k} per token, {m.n_shared} shared of "
            f"{m.shared_dim}" + (", old expert layout" if m.expert_layout == "old" else "")
        )
    else:
        out["MoE"] = "none"
    if c.engram is not None:
        e = c.engram
        out["Engram"] = (
            f"layers {','.join(map(str, e.layers))}: orders {','.join(map(str, e.orders))}, "
            f"{e.n_hash_heads} hash heads, d_mem {e.d_mem}, conv {e.conv_kernel} "
            f"(dilation {e.dilation})"
        )
    else:
        out["Engram"] = "none"
    norm = "RMSNorm" if c.norm == "rms" else "DynamicTanh"
    half = "first" if c.silu_first else "second"
    out["norm / MLP"] = f"{norm} / SwiGLU {c.mlp_hidden or 'none'} (SiLU on the {half} half)"
    return out
