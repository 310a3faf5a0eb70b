"""Generation detection (formats v2 §1) rule by rule, on key sets alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from swamla_tui.model.detect import detect_generation

F32, BF16 = torch.float32, torch.bfloat16


def _sd(
    local: str, ranks=(32, 32), moe: bool = False, extra=(), expert_dtype=F32
) -> dict[str, Any]:
    """Layers 0, 1 local (swa | flash | deltanet), 2 and 3 MLA with the given kv ranks."""
    sd = {"transformer.wte.weight": torch.zeros(8, 4)}
    for i in (0, 1):
        p = f"transformer.h.{i}.attn."
        sd[p + "q_proj.weight"] = torch.zeros(4, 4)
        if local == "deltanet":
            sd[p + "g_proj.weight"] = torch.zeros(2, 4)
        else:
            sd[p + ("causal_mask" if local == "flash" else "mask")] = torch.zeros(8, 8)
    for i, r in zip((2, 3), ranks, strict=True):
        p = f"transformer.h.{i}."
        sd[p + "attn.wkv_a.weight"] = torch.zeros(r + 4, 4)
        sd[p + "attn.kv_norm.weight"] = torch.zeros(r)
        if moe:
            sd[p + "ffn.router.gate.weight"] = torch.zeros(4, 4)
            sd[p + "ffn.experts.gate_up_weight"] = torch.zeros(4, 4, 4, dtype=expert_dtype)
    for k in extra:
        sd[k] = torch.zeros(2)
    return sd


@pytest.mark.parametrize(
    ("sd", "args", "container", "want", "why"),
    [
        (_sd("swa"), {"swa_window": 256}, "model", "G1", "one MLA kv rank"),
        (_sd("swa", ranks=(16, 48)), {}, "model", "G2", "per-layer MLA kv ranks"),
        (_sd("swa"), {"use_tensorboard": True}, "model", "G2", "use_tensorboard"),
        (_sd("swa", moe=True), {}, "model", "G3", "MoE"),
        (_sd("flash"), {}, "model", "G3", "flash SWA"),
        (_sd("deltanet"), {"compile_mode": "x"}, "model", "G4", "neither"),
        (_sd("deltanet"), {"resume_from": None}, "model", "G5", "resume_from"),
        (_sd("deltanet"), {"resume_from": None, "use_triton_kernels": 1}, "", "G6", "triton"),
        (_sd("deltanet"), {}, "model_state_dict", "G6", "model_state_dict"),
        (_sd("deltanet", extra=["transformer.h.2.engram.x"]), {}, "", "G6", "Engram"),
        (_sd("deltanet", moe=True, expert_dtype=BF16), {}, "", "G6", "bfloat16"),
        (_sd("deltanet"), {}, "", "G6", "assumed G6"),
    ],
)
def test_detection_rules(sd, args, container, want, why):
    gen, reason = detect_generation(sd, args, container)
    assert gen == want and why in reason
