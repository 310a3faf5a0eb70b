"""Format generations G1-G6 and key handling (v2 spec §1, §2).

Two semantic switches are invisible in the weights: MLA's q_pe rotation (by head index in
G1-G4, by position in G5-G6) and the dense-MLP SiLU half (second half in G1-G5, first in G6).
They are decided here from the layer kinds and the saved argument dict, in the spec's order;
a bare state dict has no argument dict, so the caller may override the answer.

Also here: which stored tensors are skipped (statistics, masks, FP8 metadata, the tied head)
and the in-memory normalisation of the weights the model reads (DyT `alpha` of shape (),
old-layout experts transposed to the new layout).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import CheckpointError
from .config import GENERATIONS, Generation, ModelConfig

# statistics, FP8 scaling metadata and the tied head: never read (v2 §2)
_SKIP_SUFFIXES = (
    "ffn.router.load_history",
    "ffn.router.update_count",
    "._extra_state",
)
# shape-only buffers: their shape tells block_size and their name flash SWA; no data needed
_MASK_SUFFIXES = ("attn.mask", "attn.causal_mask")
_LAYER_RE = re.compile(r"^transformer\.h\.(\d{1,6})\.")


def is_mask_key(key: str) -> bool:
    return key.endswith(_MASK_SUFFIXES)


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


def _layer_keys(sd: Mapping[str, Any]) -> dict[int, list[str]]:
    layers: dict[int, list[str]] = {}
    for k in sd:
        m = _LAYER_RE.match(k)
        if m:
            layers.setdefault(int(m.group(1)), []).append(k[m.end() :])
    return layers


def _bf16_experts(sd: Mapping[str, torch.Tensor]) -> bool:
    """Routed experts stored bfloat16 next to float32 weights: HEAD's trainer (8db78fb)."""
    expert = [v.dtype for k, v in sd.items() if ".ffn.experts." in k and v.is_floating_point()]
    other = [
        v.dtype
        for k, v in sd.items()
        if ".ffn.experts." not in k and v.is_floating_point() and not is_mask_key(k)
    ]
    return bool(expert) and all(d == torch.bfloat16 for d in expert) and torch.float32 in other


def detect_generation(
    sd: Mapping[str, torch.Tensor], args: Mapping[str, Any], container: str
) -> tuple[Generation, str]:
    """The generation and a short reason (v2 §1). `container`: the key the weights came from."""
    layers = _layer_keys(sd)
    swa = dn = router = flash = False
    ranks: set[int] = set()
    for i, keys in layers.items():
        ks = set(keys)
        if "attn.g_proj.weight" in ks or "attn.deltanet.g_proj.weight" in ks:
            dn = True
        elif "attn.wkv_a.weight" in ks:
            nw = sd.get(f"transformer.h.{i}.attn.kv_norm.weight")
            if nw is not None and nw.ndim == 1:
                ranks.add(int(nw.shape[0]))
        elif "attn.q_proj.weight" in ks:
            swa = True
            flash = flash or "attn.causal_mask" in ks
        router = router or "ffn.router.gate.weight" in ks
    if swa:
        if router or flash:
            why = "flash SWA buffers" if flash else "SWA layers with MoE"
            return "G3", why
        if any(k in args for k in ("use_moe", "use_gated_deltanet", "use_flash_attention")):
            return "G3", "SWA layers; config has use_moe"
        if len(ranks) > 1:
            return "G2", "SWA layers with per-layer MLA kv ranks"
        if "use_tensorboard" in args:
            return "G2", "SWA layers; config has use_tensorboard"
        return "G1", "SWA layers, one MLA kv rank"
    if args:
        if "use_triton_kernels" in args:
            return "G6", "config has use_triton_kernels"
        if "resume_from" in args:
            return "G5", "config has resume_from"
        if dn or "deltanet_latent_dim" in args:
            return "G4", "config has neither use_triton_kernels nor resume_from"
    if not dn:  # no local layers at all and no dating config key: as v1
        return ("G3", "MLA with MoE") if router else ("G1", "MLA layers only")
    if container == "model_state_dict" and not args:
        return "G6", "weights under model_state_dict without a config"
    if any(".engram." in k for k in sd):
        return "G6", "Engram layers"
    if _bf16_experts(sd):
        return "G6", "routed experts stored bfloat16"
    return "G6", "bare DeltaNet state dict: assumed G6 (HEAD); override with generation=G4/G5"


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
    return names, _bf16_experts(sd)


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
    from .infer import infer_config

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
    from .engram import mapping_tensor, token_mapping

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
