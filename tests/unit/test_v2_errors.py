"""What the loader refuses, with one line: neural-memory MLA, absurd config values, bad shapes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pytest
import torch

import swamla_tui
from swamla_tui.base.errors import CheckpointError
from swamla_tui.checkpoint.reader import read_checkpoint
from tests.support.helpers import V2_CKPT


@lru_cache(maxsize=1)
def _ck() -> dict[str, Any]:
    return read_checkpoint(V2_CKPT)


def _save(tmp_path, sd=None, config=None) -> str:
    ck = _ck()
    p = tmp_path / "x.pt"
    sd = dict(ck["model_state_dict"]) if sd is None else sd
    cfg = dict(ck["config"]) if config is None else config
    torch.save({"model_state_dict": sd, "config": cfg, "step": 1}, p)
    return str(p)


def _err(path: str, **kw) -> str:
    with pytest.raises(CheckpointError) as ei:
        swamla_tui.load(path, tokenizer=False, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and len(msg) < 300
    return msg


def test_neural_memory_mla_is_refused(tmp_path):
    sd = dict(_ck()["model_state_dict"])
    sd["_orig_mod.transformer.h.2.memory.layers.0.weight"] = torch.zeros(8, 64)
    sd["_orig_mod.transformer.h.2.memory_up.weight"] = torch.zeros(64, 8)
    sd["_orig_mod.transformer.h.2.gate_proj.weight"] = torch.zeros(64, 128)
    msg = _err(_save(tmp_path, sd))
    assert "neural-memory" in msg and "layer 2" in msg


@pytest.mark.parametrize("bs", [0, -5, 10**9])
def test_absurd_block_size(tmp_path, bs):
    cfg = dict(_ck()["config"], block_size=bs)
    assert "block_size" in _err(_save(tmp_path, config=cfg))


def test_top_k_larger_than_the_experts(tmp_path):
    cfg = dict(_ck()["config"], latent_n_activated=40)
    msg = _err(_save(tmp_path, config=cfg))
    assert "top-k 40" in msg and "32 experts" in msg


def test_non_integer_config_value(tmp_path):
    cfg = dict(_ck()["config"], n_activated="lots")
    assert "n_activated" in _err(_save(tmp_path, config=cfg))


def test_too_many_layers(tmp_path):
    sd = dict(_ck()["model_state_dict"])
    sd["_orig_mod.transformer.h.100000.norm1.weight"] = torch.ones(64)
    assert "at most 512 layers" in _err(_save(tmp_path, sd))


def test_missing_layer_in_the_middle(tmp_path):
    sd = {k: v for k, v in _ck()["model_state_dict"].items() if ".h.3." not in k}
    msg = _err(_save(tmp_path, sd))
    assert "layer 3" in msg and "g_proj" in msg


def test_deltanet_width_not_heads_times_head_size(tmp_path):
    sd = dict(_ck()["model_state_dict"])
    sd["_orig_mod.transformer.h.0.attn.g_proj.weight"] = torch.zeros(4, 64)  # 4 x 16 != 60
    assert "DeltaNet projection width 60" in _err(_save(tmp_path, sd))


def test_inconsistent_mla_shapes(tmp_path):
    sd = dict(_ck()["model_state_dict"])
    sd["_orig_mod.transformer.h.2.attn.wo.weight"] = torch.zeros(64, 71)
    assert "inconsistent MLA shapes in layer 2" in _err(_save(tmp_path, sd))


def test_expert_shapes_that_fit_no_layout(tmp_path):
    sd = dict(_ck()["model_state_dict"])
    sd["_orig_mod.transformer.h.2.ffn.experts.down_weight"] = torch.zeros(32, 16, 15)
    assert "fit neither layout" in _err(_save(tmp_path, sd))


def test_bad_generation_value(tmp_path):
    assert "generation must be" in _err(_save(tmp_path), generation="v7")
    assert "generation must be" in _err(str(tmp_path / "absent.pt"), generation="G0")
