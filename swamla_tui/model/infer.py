"""Dimension inference from a state dict (formats v1 §2, formats v2 §4).

One pass groups the keys by layer (O(number of tensors)); every dimension is then read from
one tensor's shape or solved arithmetically (no search over a dimension). Values that only
the argument dict holds (block_size, top-k) are bounded, since a checkpoint is untrusted.
Every failure is a one-line `CheckpointError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..base.errors import CheckpointError
from .config import (
    MAX_BLOCK_SIZE,
    MAX_LAYERS,
    PRESETS,
    DeltaNetConfig,
    EngramConfig,
    ExpertLayout,
    Generation,
    LayerKind,
    ModelConfig,
    MoEConfig,
)
from .detect import MASK_SUFFIXES, detect_generation
from .infer_g7 import add_g7

_LAYER_RE = re.compile(r"^transformer\.h\.(\d{1,6})\.(.+)$")
_TABLE_RE = re.compile(r"^engram\.embeddings\.tables\.n(\d{1,3})_h(\d{1,3})\.weight$")
_SHARED_RE = re.compile(r"^ffn\.shared_experts\.(\d{1,4})\.")
_LINEAR_BIAS_SUFFIXES = tuple(
    f"{n}.bias"
    for n in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj")
    + ("wq", "wq_a", "wq_b", "wkv_a", "wkv_b", "wo")
)


def _err(msg: str) -> CheckpointError:
    return CheckpointError(f"not an SWA-MLA state dict: {msg}")


def _shape(t: Any, key: str, ndim: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in getattr(t, "shape", ()))
    if len(shape) != ndim:
        raise _err(f"'{key}' has shape {shape}, expected {ndim} dimensions")
    return shape


class _Layer:
    """One layer's tensors by their key inside `transformer.h.<i>.`."""

    def __init__(self, index: int) -> None:
        self.i = index
        self.t: dict[str, Any] = {}

    def has(self, key: str) -> bool:
        return key in self.t

    def dims(self, key: str, ndim: int) -> tuple[int, ...]:
        if key not in self.t:
            raise _err(f"missing 'transformer.h.{self.i}.{key}'")
        return _shape(self.t[key], f"transformer.h.{self.i}.{key}", ndim)

    def rows(self, key: str) -> int:
        return self.dims(key, 2)[0]


def _int_arg(args: Mapping[str, Any], key: str, default: int | None) -> int | None:
    v = args.get(key)
    if v is None:
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise CheckpointError(f"config '{key}' is not an integer: {str(v)[:40]!r}") from None


def _group(sd: Mapping[str, Any]) -> list[_Layer]:
    layers: dict[int, _Layer] = {}
    for k, v in sd.items():
        m = _LAYER_RE.match(k)
        if m:
            i = int(m.group(1))
            if i >= MAX_LAYERS:
                raise _err(f"layer index {i} (at most {MAX_LAYERS} layers are supported)")
            layers.setdefault(i, _Layer(i)).t[m.group(2)] = v
    if not layers:
        raise _err("no 'transformer.h.<i>' layers")
    n = max(layers) + 1
    return [layers.get(i) or _Layer(i) for i in range(n)]


def _kind(layer: _Layer) -> LayerKind:
    p = f"transformer.h.{layer.i}."
    if layer.has("attn.g_proj.weight") or layer.has("attn.deltanet.g_proj.weight"):
        # (G7's fused g_beta_proj was split into g_proj/beta_proj by formats.resolve_model)
        return "deltanet"  # DeltaNet layers also have attn.q_proj: test g_proj first
    if layer.has("attn.wkv_a.weight"):
        if any(part.startswith("memory") for k in layer.t for part in k.split(".")):
            raise CheckpointError(
                f"layer {layer.i} uses the neural-memory MLA option (--use_neural_memory, "
                "trainer Dec 9-16 2025), which is not supported"
            )
        return "mla"
    if layer.has("attn.q_proj.weight"):
        return "swa"
    raise _err(
        f"layer {layer.i} has neither '{p}attn.q_proj.weight' (SWA) nor "
        f"'{p}attn.wkv_a.weight' (MLA) nor '{p}attn.g_proj.weight' (DeltaNet)"
    )


def _mla(layer: _Layer) -> tuple[int, int, int, int, int, int]:
    """(H, q_lora, r, dn, dr, dv) of one MLA layer, solved from four shapes.

    q_rows = H(dn+dr), kvb_rows = H(dn+dv), wo_in = H dv, so q_rows - kvb_rows + wo_in = H dr.
    """
    r = layer.dims("attn.kv_norm.weight", 1)[0]
    dr = layer.rows("attn.wkv_a.weight") - r
    if dr <= 0 or dr % 2:
        raise _err(f"layer {layer.i}: MLA rope dim {dr} (wkv_a rows - kv rank) is not even and > 0")
    if layer.has("attn.wq_b.weight"):
        q_rows, q_lora = layer.rows("attn.wq_b.weight"), layer.rows("attn.wq_a.weight")
    else:
        q_rows, q_lora = layer.rows("attn.wq.weight"), 0
    wo_in = layer.dims("attn.wo.weight", 2)[1]
    kvb_rows = layer.rows("attn.wkv_b.weight")
    hdr = q_rows - kvb_rows + wo_in
    h = hdr // dr if hdr > 0 and hdr % dr == 0 else 0
    ok = h > 0 and wo_in % h == 0 and kvb_rows % h == 0
    dv = wo_in // h if ok else 0
    dn = kvb_rows // h - dv if ok else 0
    if not ok or dn <= 0 or dv <= 0 or q_rows != h * (dn + dr):
        raise _err(f"inconsistent MLA shapes in layer {layer.i}")
    return h, q_lora, r, dn, dr, dv


def _deltanet(layer: _Layer, c: int) -> DeltaNetConfig:
    wedlm = layer.has("attn.deltanet.g_proj.weight")
    p = "attn.deltanet." if wedlm else "attn."
    h = layer.rows(p + "g_proj.weight")
    if not 1 <= h <= c:
        raise _err(f"layer {layer.i}: {h} DeltaNet heads for n_embd {c}")
    d = c // h
    r = layer.rows(p + "v_down.weight") if layer.has(p + "v_down.weight") else 0
    share = layer.has(p + "qk_proj.weight") or layer.has(p + "qk_down.weight")
    width = layer.rows(p + ("v_up.weight" if r else "v_proj.weight"))
    if width != h * d:
        raise _err(
            f"layer {layer.i}: DeltaNet projection width {width} is not heads x (C // heads) "
            f"= {h} x {d}"
        )
    k = layer.dims(p + "q_conv.conv.weight", 3)[2]
    if not 1 <= k <= 64:
        raise _err(f"layer {layer.i}: DeltaNet convolution kernel {k}")
    cfg = DeltaNetConfig(n_head=h, head_dim=d, latent_dim=r, share_qk=share, conv_kernel=k)
    if wedlm:
        cfg.wedlm = True
        cfg.wedlm_pos_rows = layer.rows("attn.position_embeddings.weight")
        cfg.wedlm_gate_out = layer.rows("attn.position_gate.0.weight")
    return cfg


def _top_k(args: Mapping[str, Any], latent: bool, n_experts: int) -> int:
    n_act = _int_arg(args, "n_activated", 3) or 3
    if latent:
        ratio = _int_arg(args, "latent_ratio", 4) or 4
        k = _int_arg(args, "latent_n_activated", None) or n_act * ratio
    else:
        k = n_act
    if not 1 <= k <= n_experts:
        raise CheckpointError(
            f"MoE top-k {k} (from the config or its defaults) does not fit {n_experts} experts"
        )
    return k


def _moe(layer: _Layer, c: int, args: Mapping[str, Any], bias: bool) -> MoEConfig:
    e = layer.rows("ffn.router.gate.weight")
    latent = layer.has("ffn.up_proj.weight")
    d = layer.rows("ffn.down_proj.weight") if latent else c
    shared = {int(m.group(1)) for k in layer.t if (m := _SHARED_RE.match(k))}
    if shared != set(range(len(shared))):
        raise _err(f"layer {layer.i}: shared experts {sorted(shared)} are not numbered 0..n-1")
    fs = layer.rows("ffn.shared_experts.0.gate_up_proj.weight") // 2 if shared else 0
    gu = layer.dims("ffn.experts.gate_up_weight", 3)
    dw = layer.dims("ffn.experts.down_weight", 3)
    layout: ExpertLayout
    if gu[1] == d and dw[2] == d:
        layout, f = "new", gu[2] // 2
        ok = dw[1] == f and gu[2] == 2 * f
    elif gu[2] == d and dw[1] == d:
        layout, f = "old", gu[1] // 2
        ok = dw[2] == f and gu[1] == 2 * f
    else:
        layout, f, ok = "new", 0, False
    if not ok or f <= 0 or gu[0] != e or dw[0] != e:
        raise _err(
            f"layer {layer.i}: routed expert shapes {gu} / {dw} fit neither layout for width {d}"
        )
    return MoEConfig(
        latent=latent,
        n_experts=e,
        top_k=_top_k(args, latent, e),
        n_shared=len(shared),
        shared_dim=fs,
        expert_dim=f,
        width=d,
        expert_layout=layout,
        expert_bias=layer.has("ffn.experts.gate_up_bias"),
    )


def _engram(layers: list[_Layer], idx: list[int]) -> EngramConfig:
    first = layers[idx[0]]
    tables: dict[tuple[int, int], int] = {}
    slot = 0
    for k, v in first.t.items():
        m = _TABLE_RE.match(k)
        if m:
            n, h = int(m.group(1)), int(m.group(2))
            rows, cols = _shape(v, k, 2)
            tables[(n, h)] = rows
            slot = cols
    orders = list(dict.fromkeys(n for n, _ in tables))  # state-dict order = config order
    heads = sorted({h for _, h in tables})
    if not orders or heads != list(range(len(heads))):
        raise _err(f"layer {first.i}: Engram tables are not n<order>_h0..h<K-1>")
    if any((n, h) not in tables for n in orders for h in heads) or min(orders) < 1:
        raise _err(f"layer {first.i}: Engram tables missing for some (order, head)")
    seeds = first.dims("engram.embeddings.hash_seeds", 2)
    if seeds[1] != len(heads) or seeds[0] < min(max(orders), 3):
        raise _err(f"layer {first.i}: Engram hash_seeds shape {seeds}")
    cfg = EngramConfig(
        layers=idx,
        orders=orders,
        n_hash_heads=len(heads),
        table_sizes=[tables[(n, h)] for n in orders for h in heads],
        slot=slot,
        conv_kernel=first.dims("engram.conv.conv.weight", 3)[2],
        n_seed_rows=seeds[0],
        bias=first.has("engram.gating.w_v.bias"),
    )
    if first.dims("engram.gating.w_v.weight", 2)[1] != cfg.d_mem:
        raise _err(f"layer {first.i}: Engram gating width is not the tables' {cfg.d_mem}")
    return cfg


def _block_size(sd: Mapping[str, Any], args: Mapping[str, Any], given: int | None) -> int:
    bs = given
    if bs is None:
        mask = next((v for k, v in sd.items() if k.endswith(MASK_SUFFIXES)), None)
        if mask is not None and getattr(mask, "ndim", 0) >= 2:
            bs = int(mask.shape[-1])
    if bs is None:
        bs = _int_arg(args, "block_size", 2048)
    assert bs is not None
    if not 1 <= bs <= MAX_BLOCK_SIZE:
        raise CheckpointError(f"block_size {bs} is out of range (1 to {MAX_BLOCK_SIZE})")
    return bs


def infer_config(
    sd: Mapping[str, Any],
    args: Mapping[str, Any] | None = None,
    *,
    block_size: int | None = None,
    generation: Generation | None = None,
) -> ModelConfig:
    """Derive the config from a prefix-stripped state dict and the training argument dict.

    `generation=None` detects it (formats v2 §1, `detect.detect_generation`).
    """
    args = dict(args or {})
    if "transformer.wte.weight" not in sd:
        raise _err("missing 'transformer.wte.weight'")
    vocab_size, n_embd = _shape(sd["transformer.wte.weight"], "transformer.wte.weight", 2)
    if "transformer.ln_f.weight" not in sd:
        raise _err("missing 'transformer.ln_f.weight'")
    layers = _group(sd)
    kinds = [_kind(layer) for layer in layers]
    gen = generation or detect_generation(sd, args, "")[0]

    dn = dr = dv = 0
    q_lora, n_head = 0, 0
    kv_lora = _int_arg(args, "mla_kv_lora_rank", 256) or 256
    ranks = [0] * len(kinds)
    mla_heads: set[int] = set()
    for layer, kind in zip(layers, kinds, strict=True):
        if kind == "mla":
            h, q_lora, ranks[layer.i], dn, dr, dv = _mla(layer)
            mla_heads.add(h)
    if len(mla_heads) > 1:
        raise _err(f"MLA layers disagree on the head count ({sorted(mla_heads)})")
    mla_ranks = [r for r, k in zip(ranks, kinds, strict=True) if k == "mla"]
    if mla_ranks:
        kv_lora = mla_ranks[0]
        n_head = mla_heads.pop()
    else:
        dn = _int_arg(args, "mla_qk_nope_head_dim", 128) or 128
        dr = _int_arg(args, "mla_qk_rope_head_dim", 64) or 64
        dv = _int_arg(args, "mla_v_head_dim", 128) or 128
        q_lora = _int_arg(args, "mla_q_lora_rank", 0) or 0
    deltanet = None
    if "deltanet" in kinds:
        deltanet = _deltanet(layers[kinds.index("deltanet")], n_embd)
    if not n_head:
        if deltanet is not None:
            n_head = deltanet.n_head
        else:
            preset = PRESETS.get(str(args.get("size", "small")), PRESETS["small"])
            n_head = _int_arg(args, "n_head", preset[2]) or preset[2]
    if not 1 <= n_head <= n_embd:
        raise _err(f"{n_head} heads for n_embd {n_embd}")

    n_kv_head = n_head
    if "swa" in kinds:
        if n_embd % n_head:
            raise CheckpointError(f"n_embd {n_embd} is not divisible by n_head {n_head}")
        layer = layers[kinds.index("swa")]
        k_rows = layer.rows("attn.k_proj.weight")
        n_kv_head = k_rows // (n_embd // n_head)
        if n_kv_head < 1 or n_head % n_kv_head or k_rows % (n_embd // n_head):
            raise CheckpointError(f"SWA k_proj has {k_rows} rows: not a multiple of the head size")

    bias = any(k.endswith(_LINEAR_BIAS_SUFFIXES) and ".ffn.experts." not in k for k in sd)
    moe = None
    mlp_hidden = 0
    for layer, kind in zip(layers, kinds, strict=True):
        if kind == "mla" and layer.has("ffn.router.gate.weight"):
            moe = moe or _moe(layer, n_embd, args, bias)
        elif not mlp_hidden:
            key = "ffn.down_proj.weight" if kind == "mla" else "mlp.down_proj.weight"
            mlp_hidden = layer.dims(key, 2)[1]
    for layer, kind in zip(layers, kinds, strict=True):
        if kind == "mla" and layer.has("ffn.router.gate.weight") != (moe is not None):
            raise _err(f"layer {layer.i}: some MLA layers have MoE feed-forwards, others not")

    eng_layers = [
        layer.i
        for layer, kind in zip(layers, kinds, strict=True)
        if kind == "mla" and any(k.startswith("engram.") for k in layer.t)
    ]
    engram = _engram(layers, eng_layers) if eng_layers else None

    cfg = ModelConfig(
        n_layer=len(kinds),
        n_embd=n_embd,
        n_head=n_head,
        n_kv_head=n_kv_head,
        vocab_size=vocab_size,
        block_size=_block_size(sd, args, block_size),
        layer_kinds=kinds,
        swa_window=_int_arg(args, "swa_window", 256) or 256,
        swa_sink_size=_int_arg(args, "swa_sink_size", 4) or 0,
        q_lora_rank=q_lora,
        kv_lora_rank=kv_lora,
        qk_nope_head_dim=dn,
        qk_rope_head_dim=dr,
        v_head_dim=dv,
        norm="dyt" if "transformer.ln_f.alpha" in sd else "rms",
        bias=bias,
        mlp_hidden=mlp_hidden,
        tokenizer_name=str(args.get("tokenizer_name") or "openai-community/gpt2"),
        generation=gen,
        kv_ranks=ranks if len(set(mla_ranks)) > 1 else [],
        swa_flash=any(k.endswith("attn.causal_mask") for k in sd),
        deltanet=deltanet,
        moe=moe,
        engram=engram,
    )
    add_g7(sd, cfg, args)
    return cfg
