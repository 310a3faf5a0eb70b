"""Generation detection (formats v2 §1, formats G7 §12): which of G1-G7 wrote a state dict.

Two semantic switches are invisible in the weights (MLA's q_pe rotation, the dense-MLP SiLU
half), so the generation is dated from the layer kinds, a few buffers and the saved argument
dict, rule by rule in the spec's order. This module sits below `infer.py` (which needs the
answer when the caller gives none) and `generation.py` (which reports it), so neither has to
import the other lazily.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

import torch

from .config import Generation

# shape-only buffers: their shape tells block_size and their name flash SWA; no data needed
MASK_SUFFIXES = ("attn.mask", "attn.causal_mask")
_LAYER_RE = re.compile(r"^transformer\.h\.(\d{1,6})\.")


# formats G7 §12: any of these weights, container keys or config keys means the 2026 trainer
G7_TOP_KEYS = ("x0_lambdas", "resid_lambdas")
G7_LAYER_SUFFIXES = (
    "attn.value_embeds.weight",
    "attn.ve_gate.weight",
    "attn.rope.sin_coef",
    "engram.gating.gate_bias",
    "attn.g_beta_proj.weight",
    "attn.qkv_conv.weight",
)
G7_CONTAINER_KEYS = ("args", "checkpoint_type")
G7_CONFIG_KEYS = ("use_value_embeds", "use_residual_scalars", "fope_enabled", "yarn_enabled")


def g7_reason(
    sd: Mapping[str, Any], args: Mapping[str, Any], container: Collection[str] = ()
) -> str | None:
    """Why this is a G7 checkpoint (weights, then container, then config), or None."""
    top = [k for k in G7_TOP_KEYS if k in sd]
    if top:
        return f"G7 weights ({top[0]})"
    hit = next((k for k in sd if k.endswith(G7_LAYER_SUFFIXES)), None)
    if hit is not None:
        return f"G7 weights ({hit.split('.', 3)[-1]})"
    box = [k for k in G7_CONTAINER_KEYS if k in container]
    if box:
        return f"G7 container (top-level '{box[0]}')"
    conf = [k for k in G7_CONFIG_KEYS if k in args]
    if conf:
        return f"config has {conf[0]}"
    return None


def is_mask_key(key: str) -> bool:
    return key.endswith(MASK_SUFFIXES)


def _layer_keys(sd: Mapping[str, Any]) -> dict[int, list[str]]:
    layers: dict[int, list[str]] = {}
    for k in sd:
        m = _LAYER_RE.match(k)
        if m:
            layers.setdefault(int(m.group(1)), []).append(k[m.end() :])
    return layers


def bf16_experts(sd: Mapping[str, torch.Tensor]) -> bool:
    """Routed experts stored bfloat16 next to float32 weights: HEAD's trainer (8db78fb)."""
    expert = [v.dtype for k, v in sd.items() if ".ffn.experts." in k and v.is_floating_point()]
    other = [
        v.dtype
        for k, v in sd.items()
        if ".ffn.experts." not in k and v.is_floating_point() and not is_mask_key(k)
    ]
    return bool(expert) and all(d == torch.bfloat16 for d in expert) and torch.float32 in other


def detect_generation(
    sd: Mapping[str, torch.Tensor],
    args: Mapping[str, Any],
    container: str,
    top_keys: Collection[str] = (),
) -> tuple[Generation, str]:
    """The generation and a short reason (formats v2 §1, formats G7 §12). `container`: the key the weights
    came from; `top_keys`: the checkpoint dict's own keys (G7 adds `args`, `checkpoint_type`)."""
    g7 = g7_reason(sd, args, top_keys)
    if g7 is not None:
        return "G7", g7
    layers = _layer_keys(sd)
    swa = dn = router = flash = False
    ranks: set[int] = set()
    for i, keys in layers.items():
        ks = set(keys)
        if ks & {"attn.g_proj.weight", "attn.deltanet.g_proj.weight", "attn.g_beta_proj.weight"}:
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
    if bf16_experts(sd):
        return "G6", "routed experts stored bfloat16"
    return "G6", "bare DeltaNet state dict: assumed G6 (HEAD); override with generation=G4/G5"
