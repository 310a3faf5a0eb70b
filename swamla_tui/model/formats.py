"""Format generations G1-G7 and key handling (formats v2 §1, §2; formats G7 §7, §8, §12).

Two semantic switches are invisible in the weights: MLA's q_pe rotation (by head index in
G1-G4, by position in G5-G6) and the dense-MLP SiLU half (second half in G1-G5, first in G6).
`detect.py` decides them from the layer kinds and the saved argument dict, in the spec's
order; a bare state dict has no argument dict, so `resolve_model` lets the caller override
the answer.

Also here: THE list of stored tensors skipped silently (`NO_FUNCTION`, below: every other
tensor the model does not use refuses the load), the EMA overlay, and the in-memory
normalisation of the weights the model reads (DyT `alpha` of shape (), old-layout experts
transposed to the new layout, G7's fused DeltaNet keys split).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..base.errors import CheckpointError
from .config import GENERATIONS, Generation, ModelConfig
from .detect import bf16_experts, detect_generation, is_mask_key
from .g7 import has_fused_deltanet, split_fused_deltanet
from .infer import infer_config
from .infer_g7 import value_notices
from .token_map import mapping_tensor, token_mapping

__all__ = [
    "NO_FUNCTION",
    "adapt_weights",
    "ema_overlay",
    "unknown_weights_error",
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

# THE skip list: stored tensors known to carry no function, dropped silently (by key
# suffix). Everything else a checkpoint holds must be used by the model, or the load is
# refused (`unknown_weights_error`): a trained tensor is never dropped unnoticed.
# Not listed because they never reach a state dict: optimizer states and EMA copies are
# other container entries (`optimizer_state_dict`, `ema`), read only by `ema_overlay`.
# Never skipped: `ffn.router.expert_bias` and `engram.embeddings.hash_seeds` (both change
# outputs). SWA `attn.mask` / `attn.causal_mask` are kept as shape-only tensors (they tell
# block_size and flash SWA) and dropped by `adapt_weights`.
NO_FUNCTION: dict[str, str] = {
    "ffn.router.load_history": "router statistics",
    "ffn.router.update_count": "router statistics",
    "._extra_state": "Transformer-Engine FP8 scaling metadata",
    "attn.rope.inv_freq": "FoPE frequencies (non-persistent, rebuilt)",
    "attn.rope.harmonic_mult": "FoPE harmonic numbers (non-persistent, rebuilt)",
    "freqs_cis": "RoPE/YaRN frequency table (non-persistent, rebuilt)",
}
_SKIP_SUFFIXES = tuple(NO_FUNCTION)
TIED_HEAD = "lm_head.weight"  # tied to transformer.wte.weight: the same tensor


def prune_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the keys of `NO_FUNCTION` and the tied head; SWA masks become shape-only."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k == TIED_HEAD or k.endswith(_SKIP_SUFFIXES):
            continue
        if is_mask_key(k):
            v = torch.empty(v.shape, dtype=v.dtype, device="meta")  # 16 MB per layer otherwise
        out[k] = v
    return out


def parse_generation(value: str | None) -> Generation | None:
    """'auto' / None -> None (detect); 'G1'..'G7' (any case) -> that generation."""
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
      ([E, D, 2F] / [E, F, D]) so that one code path computes both (formats v2 §6.4).
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


def unknown_weights_error(source: str, names: list[str]) -> CheckpointError:
    """The refusal for tensors the model would not use (trained weights dropped)."""
    shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
    what = "is not part" if len(names) == 1 else "are not part"
    return CheckpointError(
        f"{source}: {shown} {what} of any SWA-MLA generation this version knows: "
        "upgrade swamla-tui, or pass --ignore-unknown-weights to run without "
        + ("it" if len(names) == 1 else "them")
    )


def ema_overlay(
    sd: Mapping[str, torch.Tensor], ema: Mapping[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """The weights with the EMA copies put over them, as the trainer's inference.py does.

    Every EMA parameter replaces the weight of the same (prefix-stripped) name, except the
    tied embedding: inference.py loads the raw `lm_head.weight` after it into the same
    tensor, so the raw embedding wins (formats G7 §8). Buffers have no EMA copy and stay raw.
    An EMA name the weights lack, or of another shape, refuses the overlay.
    """
    out = dict(sd)
    for k, v in ema.items():
        if k in ("transformer.wte.weight", TIED_HEAD):
            continue
        if k not in sd:
            raise CheckpointError(f"{source}: the EMA weights hold {k}, which the model has not")
        if tuple(v.shape) != tuple(sd[k].shape):
            raise CheckpointError(
                f"{source}: EMA tensor {k} has shape {tuple(v.shape)}, the weight "
                f"{tuple(sd[k].shape)}"
            )
        out[k] = v
    return out


def resolve_model(
    sd: Mapping[str, torch.Tensor],
    args: Mapping[str, Any],
    weights_key: str = "",
    generation: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    top_keys: tuple[str, ...] = (),
) -> tuple[ModelConfig, dict[str, torch.Tensor], str]:
    """Config, the tensors the model loads, and why this generation (one line).

    `args` is the checkpoint's saved argument dict (it dates the checkpoint); `overrides`
    (the user's) replace or complete its entries for the dimensions only.
    `generation`: None / "auto" detects it; "G1".."G6" overrides the semantic switches
    (q_pe rotation, dense-MLP SiLU half) for a bare state dict whose date is unknown.
    """
    want = parse_generation(generation)
    found, why = detect_generation(sd, args, weights_key, top_keys)
    args = {**args, **(overrides or {})}
    if want is not None and want != found:
        why = f"set by the user (detected {found}: {why})"
    elif want is not None:
        why = f"set by the user, as detected ({why})"
    fused = has_fused_deltanet(sd)
    if fused:  # formats G7 §7: g_beta_proj / qkv_conv as the unfused keys (views)
        sd = split_fused_deltanet(sd)
    cfg = infer_config(sd, args, generation=want or found)
    if cfg.deltanet is not None:
        cfg.deltanet.fused_keys = fused
    return cfg, adapt_weights(sd, cfg), why


def config_notices(cfg: ModelConfig, args: Mapping[str, Any]) -> list[str]:
    """What the weights could not tell and the argument dict did not say either."""
    out = value_notices(cfg)
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
            f"tokenizer ({cfg.tokenizer_name!r}): load it with that tokenizer "
            "(--tokenizer PATH; tokenizer= in load()) or pass engram_mapping="
        )
    return token_mapping(tokenizer.get_vocab(), cfg.vocab_size)


def _g7_lines(c: ModelConfig) -> dict[str, str]:
    """What the 2026 trainer adds (formats G7 §3-§11), and only for models that can have it."""
    if c.generation != "G7" and not (c.residual_scalars or any(c.ve_rows) or c.fope):
        return {}
    out: dict[str, str] = {}
    ve = [(i, r) for i, r in enumerate(c.ve_rows) if r]
    if ve:
        rows = "/".join(str(r) for r in dict.fromkeys(r for _, r in ve))
        out["value embeddings"] = (
            f"layers {','.join(str(i) for i, _ in ve)} (rows {rows}, gate {c.ve_gate_dim})"
        )
    else:
        out["value embeddings"] = "none"
    out["residual scalars"] = (
        "on (resid·x + x0·embedding before every block)" if c.residual_scalars else "off"
    )
    if c.n_mla:
        f = c.fope
        out["MLA positions"] = (
            f"FoPE: {f.n_harmonics} harmonics, {f.n_active} active pairs + {f.n_floor} floor, "
            f"theta {f.theta:g}"
            if f is not None
            else "RoPE (interleaved, base 10000)"
        )
        out["YaRN"] = (
            f"softmax factor {c.attn_factor:.4g} (frequencies unused, as trained)"
            if c.attn_factor != 1.0
            else "off (softmax factor 1)"
        )
    return out


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
            f"conv {d.conv_kernel}"
            + (", WeDLM position wrapper" if d.wedlm else "")
            + (", fused keys (g_beta_proj, qkv_conv)" if d.fused_keys else "")
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
            f"(dilation {e.dilation}), "
            + ("per-dimension gate with gate_bias" if e.gate_bias else "scalar gate")
        )
    else:
        out["Engram"] = "none"
    out.update(_g7_lines(c))
    norm = "RMSNorm" if c.norm == "rms" else "DynamicTanh"
    half = "first" if c.silu_first else "second"
    out["norm / MLP"] = f"{norm} / SwiGLU {c.mlp_hidden or 'none'} (SiLU on the {half} half)"
    return out
