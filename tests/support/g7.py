"""Test support for G7 (the trainer's 2026 checkpoints): fixture paths, greedy settings,
and synthetic G7 checkpoints written the trainer's way (random weights, fused or unfused
DeltaNet keys, `config` = the model dataclass dict, `args` = the command line)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict

import torch

from tests.support.helpers import FIXTURES

G7_DIR = FIXTURES / "g7" / "g7_base_small"
G7_CKPT = G7_DIR / "checkpoint_base_1_00B_step7629.pt"
G7_EXPECTED = G7_DIR / "checkpoint_base_1_00B_step7629.expected.pt"
G7_TOKENIZER = G7_DIR / "tok384"
TOL = 1e-4


class Greedy(TypedDict):
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float


GREEDY: Greedy = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0}


@lru_cache(maxsize=1)
def expected() -> dict[str, Any]:
    return torch.load(G7_EXPECTED, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


def upto_first_eos(ids: list[int], eos: int | None) -> list[int]:
    """The original loop never stops at EOS: compare up to and including the first one."""
    if eos is not None and eos in ids:
        return ids[: ids.index(eos) + 1]
    return ids


def save(path: Path, obj: dict[str, Any]) -> Path:
    torch.save(obj, path)
    return path


G7_VARIANTS = ("yarn_fused_shared_latent", "instruct_unfused", "bf16_whole")


def g7_variant_config(name: str) -> Any:
    """Small G7 configs for what the fixture lacks (C 48; DeltaNet 5 heads: P 45 < C)."""
    from swamla_tui.model.config import EngramConfig, FoPEConfig
    from tests.support.helpers import v2_variant_config

    cfg = v2_variant_config("g6_base")  # C 48, D D M D D M, latent MoE, kv ranks 20/40
    dn = cfg.deltanet
    assert dn is not None
    cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.generation = 20, 6, "G7"
    cfg.residual_scalars, cfg.ve_rows, cfg.ve_gate_dim = True, [384, 0, 50304, 0, 384, 0], 32
    cfg.fope = FoPEConfig(n_floor=1, n_active=9, n_harmonics=3)
    cfg.engram = EngramConfig(
        layers=[2], orders=[2, 3], n_hash_heads=2, table_sizes=[31, 37, 41, 43],
        slot=4, conv_kernel=4, n_seed_rows=3, gate_bias=True,
    )  # fmt: skip
    if name in ("yarn_fused_shared_latent", "bf16_whole"):
        dn.latent_dim, dn.share_qk = 16, True
        cfg.attn_factor = 0.1 * __import__("math").log(4.0) + 1.0  # yarn_scale_factor 4
    elif name == "instruct_unfused":
        cfg.vocab_size, cfg.ve_rows = 386, [386, 0, 50304, 0, 386, 0]
        cfg.fope, cfg.qk_rope_head_dim, cfg.moe, cfg.engram = None, 6, None, None
        cfg.attn_factor = 1.25  # an explicit yarn_attn_factor
    else:
        raise ValueError(name)
    return cfg


def _trainer_dataclass_dict(cfg: Any, name: str) -> dict[str, Any]:
    """The G7 `config` entry: the model dataclass dict (the fields a loader reads)."""
    out: dict[str, Any] = {
        "vocab_size": cfg.vocab_size, "block_size": cfg.block_size, "n_layer": cfg.n_layer,
        "n_head": cfg.n_head, "n_embd": cfg.n_embd, "rope_theta": 10000.0, "q_lora_rank": 0,
        "kv_lora_rank": cfg.kv_lora_rank, "qk_nope_head_dim": cfg.qk_nope_head_dim,
        "qk_rope_head_dim": cfg.qk_rope_head_dim, "v_head_dim": cfg.v_head_dim,
        "use_triton_kernels": True, "use_moe": cfg.moe is not None, "n_activated": 2,
        "latent_ratio": 4, "latent_n_activated": cfg.moe.top_k if cfg.moe else None,
        "use_value_embeds": True, "ve_gate_dim": cfg.ve_gate_dim, "use_residual_scalars": True,
        "fope_enabled": cfg.fope is not None, "fope_n_harmonics": 3, "fope_floor_ratio": 0.1,
        "yarn_enabled": True, "yarn_scale_factor": 4.0, "yarn_attn_factor": None,
        "use_ema": False,
    }  # fmt: skip
    if name == "instruct_unfused":
        out["yarn_scale_factor"], out["yarn_attn_factor"] = 1.0, 1.25
    if name != "instruct_unfused":  # the dataclass fills the factor it used (formats G7 §2.1)
        out["yarn_attn_factor"] = cfg.attn_factor
    return out


def build_g7(name: str, seed: int = 5) -> Any:
    """The variant's model in memory, random weights (residual scalars near their init)."""
    from swamla_tui.model.transformer import SWAMLA
    from tests.support.helpers import random_init_

    cfg = g7_variant_config(name)
    model = SWAMLA(cfg).eval()
    random_init_(model, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        assert model.resid_lambdas is not None and model.x0_lambdas is not None
        model.resid_lambdas.copy_(1.0 + 0.1 * torch.randn(cfg.n_layer, generator=g))
        model.x0_lambdas.copy_(0.3 * torch.randn(cfg.n_layer, generator=g))
        for n, p in model.named_parameters():
            if n.endswith(("sin_coef", "cos_coef")):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


def trainer_state_dict(model: Any, *, fused: bool) -> dict[str, torch.Tensor]:
    """The model's weights the way the trainer's state dict holds them: `_orig_mod.` keys,
    the tied head stored too, DeltaNet g/beta and q/k/v convs fused (formats G7 §7) or not."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sd["lm_head.weight"] = sd["transformer.wte.weight"].clone()
    if fused:
        for i, kind in enumerate(model.cfg.layer_kinds):
            if kind != "deltanet":
                continue
            p = f"transformer.h.{i}.attn."
            sd[p + "g_beta_proj.weight"] = torch.cat(
                (sd.pop(p + "g_proj.weight"), sd.pop(p + "beta_proj.weight"))
            )
            for t in ("weight", "bias"):
                parts = [sd.pop(f"{p}{x}_conv.conv.{t}") for x in "qkv"]
                sd[f"{p}qkv_conv.{t}"] = torch.cat(parts)
    for i, kind in enumerate(model.cfg.layer_kinds):  # statistics the trainer stores too
        if kind == "mla" and model.cfg.moe is not None:
            sd[f"transformer.h.{i}.ffn.router.load_history"] = torch.rand(model.cfg.moe.n_experts)
    return {"_orig_mod." + k: v for k, v in sd.items()}


def write_g7(
    folder: Path,
    name: str,
    model: Any,
    *,
    ema: dict[str, torch.Tensor] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    """A local G7 training checkpoint of `model` (formats G7 §1.1), with the tok384 tokenizer beside."""
    import shutil

    cfg = model.cfg
    fused = name != "instruct_unfused"
    sd = trainer_state_dict(model, fused=fused)
    sd.update(extra or {})
    if name == "bf16_whole":  # the G6 perf branch: every floating tensor bf16 (formats G7 §1.3)
        sd = {k: v.bfloat16() if v.is_floating_point() else v for k, v in sd.items()}
        if ema is not None:
            ema = {k: v.bfloat16() for k, v in ema.items()}
    instruct = name == "instruct_unfused"
    obj: dict[str, Any] = {
        "model_state_dict": sd,
        "optimizer_state_dict": [{"state": {}, "param_groups": []}],
        "step": 123,
        "config": _trainer_dataclass_dict(cfg, name),
        "args": {
            "size": "engram-moe-1b",
            "block_size": cfg.block_size,
            "tokenizer_name": "tok384",
            "use_ema": ema is not None,
            "instruct": instruct,
        },  # fmt: skip
        "total_tokens": 3_000_000,
        "checkpoint_type": "instruct" if instruct else "base",
        "pretrain_tokens": 2_000_000,
        "instruct_tokens": 1_000_000 if instruct else 0,
    }
    if ema is not None:
        obj["ema"] = {"decay": 0.999, "ema_params": ema}
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "tok384").exists():
        shutil.copytree(G7_TOKENIZER, folder / "tok384")
    kind = "instruct_pt2_0M_it1_0M" if instruct else "base_2_0M"
    return save(folder / f"checkpoint_{kind}_step123.pt", obj)
