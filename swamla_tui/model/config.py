"""`ModelConfig`: every dimension of an SWA-MLA model, inferred from its weights.

The training argument dict never holds n_head / n_layer / n_embd / vocab_size, and custom
runs differ from their presets, so shapes are read from the tensors (spec §2) and the
argument dict only fills what the weights cannot tell (window, sinks, tokenizer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CheckpointError

PRESETS: dict[str, tuple[int, int, int]] = {  # size -> (n_layer, n_embd, n_head)
    "small": (12, 1024, 16),
    "base": (24, 1536, 16),
    "large": (28, 2048, 16),
    "xl": (32, 4096, 32),
}

_LAYER_RE = re.compile(r"^transformer\.h\.(\d+)\.")
_LINEAR_BIAS_SUFFIXES = tuple(
    f"{n}.bias"
    for n in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj")
    + ("wq", "wq_a", "wq_b", "wkv_a", "wkv_b", "wo")
)


@dataclass
class ModelConfig:
    n_layer: int
    n_embd: int
    n_head: int
    n_kv_head: int
    vocab_size: int
    block_size: int
    layer_kinds: list[str]  # "swa" | "mla", one per layer
    swa_window: int = 256
    swa_sink_size: int = 4
    q_lora_rank: int = 0
    kv_lora_rank: int = 256
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    norm: str = "rms"  # "rms" | "dyt"
    bias: bool = False
    mlp_hidden: int = 0  # 4 * n_embd in every known checkpoint; read from the weights
    tokenizer_name: str = "openai-community/gpt2"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_swa(self) -> int:
        return self.layer_kinds.count("swa")

    @property
    def n_mla(self) -> int:
        return self.layer_kinds.count("mla")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _need(sd: Mapping[str, Any], key: str) -> Any:
    if key not in sd:
        raise CheckpointError(f"not an SWA-MLA state dict: missing '{key}'")
    return sd[key]


def infer_config(
    sd: Mapping[str, Any], args: Mapping[str, Any] | None = None, *, block_size: int | None = None
) -> ModelConfig:
    """Derive the config from a prefix-stripped state dict and the training argument dict."""
    args = dict(args or {})
    wte = _need(sd, "transformer.wte.weight")
    if getattr(wte, "ndim", 0) != 2:
        raise CheckpointError("not an SWA-MLA state dict: 'transformer.wte.weight' is not a matrix")
    vocab_size, n_embd = (int(s) for s in wte.shape)
    _need(sd, "transformer.ln_f.weight")

    layer_ids = {int(m.group(1)) for k in sd if (m := _LAYER_RE.match(k))}
    if not layer_ids:
        raise CheckpointError("not an SWA-MLA state dict: no 'transformer.h.<i>' layers")
    n_layer = max(layer_ids) + 1
    kinds: list[str] = []
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        if p + "attn.q_proj.weight" in sd:
            kinds.append("swa")
        elif p + "attn.wkv_a.weight" in sd:
            kinds.append("mla")
        else:
            raise CheckpointError(
                f"not an SWA-MLA state dict: layer {i} has neither "
                f"'{p}attn.q_proj.weight' (SWA) nor '{p}attn.wkv_a.weight' (MLA)"
            )

    first = "transformer.h.0."
    norm_key = first + ("norm1" if kinds[0] == "swa" else "attn_norm")
    norm = "dyt" if norm_key + ".alpha" in sd else "rms"
    bias = any(k.endswith(_LINEAR_BIAS_SUFFIXES) for k in sd)

    # MLA dimensions
    q_lora_rank = int(args.get("mla_q_lora_rank", 0) or 0)
    kv_lora_rank = int(args.get("mla_kv_lora_rank", 256))
    dn = int(args.get("mla_qk_nope_head_dim", 128))
    dr = int(args.get("mla_qk_rope_head_dim", 64))
    dv = int(args.get("mla_v_head_dim", 128))
    n_head: int | None = None
    if "mla" in kinds:
        p = f"transformer.h.{kinds.index('mla')}.attn."
        kv_lora_rank = int(_need(sd, p + "kv_norm.weight").shape[0])
        dr = int(_need(sd, p + "wkv_a.weight").shape[0]) - kv_lora_rank
        if p + "wq_b.weight" in sd:
            q_rows = int(sd[p + "wq_b.weight"].shape[0])
            q_lora_rank = int(_need(sd, p + "wq_a.weight").shape[0])
        else:
            q_rows = int(_need(sd, p + "wq.weight").shape[0])
            q_lora_rank = 0
        wo_in = int(_need(sd, p + "wo.weight").shape[1])
        kvb_rows = int(_need(sd, p + "wkv_b.weight").shape[0])
        # q_rows = H*(dn+dr), wo_in = H*dv, kvb_rows = H*(dn+dv): solve for H.
        # H*(dn+dr) + H*dv - ... -> kvb_rows - wo_in = H*dn ; q_rows - H*dn = H*dr
        # Prefer the argument dict's dn when consistent, else search for an H that fits.
        cands = []
        for h in range(1, max(q_rows, 1) + 1):
            if q_rows % h or wo_in % h or kvb_rows % h:
                continue
            dv_h = wo_in // h
            dn_h = kvb_rows // h - dv_h
            if dn_h > 0 and q_rows // h - dn_h == dr and n_embd % h == 0:
                cands.append((h, dn_h, dv_h))
        if not cands:
            raise CheckpointError(f"inconsistent MLA shapes in layer {kinds.index('mla')}")
        preset_h = PRESETS.get(str(args.get("size", "small")), PRESETS["small"])[2]
        pick = next((c for c in cands if c[1] == dn), None) or next(
            (c for c in cands if c[0] == preset_h), cands[0]
        )
        n_head, dn, dv = pick
    if n_head is None:
        preset = PRESETS.get(str(args.get("size", "small")), PRESETS["small"])
        n_head = int(args.get("n_head", preset[2]))
    if n_embd % n_head:
        raise CheckpointError(f"n_embd {n_embd} is not divisible by n_head {n_head}")

    n_kv_head = n_head
    if "swa" in kinds:
        p = f"transformer.h.{kinds.index('swa')}.attn."
        k_rows = int(_need(sd, p + "k_proj.weight").shape[0])
        n_kv_head = k_rows // (n_embd // n_head)
        if n_kv_head < 1 or n_head % n_kv_head:
            raise CheckpointError(f"SWA k_proj has {k_rows} rows: not a multiple of the head size")

    mlp_key = first + ("mlp" if kinds[0] == "swa" else "ffn") + ".down_proj.weight"
    mlp_hidden = int(_need(sd, mlp_key).shape[1])

    bs = block_size
    if bs is None:
        mask = next((sd[k] for k in sd if k.endswith("attn.mask")), None)
        if mask is not None and getattr(mask, "ndim", 0) >= 2:
            bs = int(mask.shape[-1])
    if bs is None:
        bs = int(args.get("block_size", 2048))

    return ModelConfig(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_kv_head=n_kv_head,
        vocab_size=vocab_size,
        block_size=bs,
        layer_kinds=kinds,
        swa_window=int(args.get("swa_window", 256)),
        swa_sink_size=int(args.get("swa_sink_size", 4)),
        q_lora_rank=q_lora_rank,
        kv_lora_rank=kv_lora_rank,
        qk_nope_head_dim=dn,
        qk_rope_head_dim=dr,
        v_head_dim=dv,
        norm=norm,
        bias=bias,
        mlp_hidden=mlp_hidden,
        tokenizer_name=str(args.get("tokenizer_name") or "openai-community/gpt2"),
    )
