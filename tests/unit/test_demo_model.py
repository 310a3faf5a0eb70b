"""The bundled demo model (`swamla_tui/demo/`, made by `scripts/train_demo.py`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pytest
import torch

from swamla_tui.demo import DEMO_CHECKPOINT, DEMO_DIR
from swamla_tui.model import SWAMLA, infer_config

KINDS = ["swa", "swa", "mla", "swa", "swa", "mla"]
PROMPT = "You: What is a list?\nAssistant:"

pytestmark = pytest.mark.skipif(
    not DEMO_CHECKPOINT.is_file(), reason="demo checkpoint not built (scripts/train_demo.py)"
)


@lru_cache(maxsize=1)
def _ckpt() -> dict[str, Any]:
    ckpt: dict[str, Any] = torch.load(DEMO_CHECKPOINT, map_location="cpu", weights_only=True)
    return ckpt


def _tokenizer(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(DEMO_DIR), local_files_only=True)


def _model() -> SWAMLA:
    ck = _ckpt()
    sd = ck["model"]
    model = SWAMLA(infer_config(sd, ck["config"]))
    model.load_state_dict({k: v.float() for k, v in sd.items() if not k.endswith("attn.mask")})
    return model.eval()


def test_checkpoint_is_a_training_checkpoint() -> None:
    ck = _ckpt()
    assert {"model", "step", "config", "val_loss"} <= set(ck)
    assert isinstance(ck["step"], int) and ck["step"] > 0
    assert isinstance(ck["val_loss"], float) and 0 < ck["val_loss"] < 10
    args = ck["config"]
    assert args["tokenizer_name"] == "swamla-demo"
    assert (args["swa_layers_per_cycle"], args["mla_layers_per_cycle"]) == (2, 1)
    for key in ("size", "block_size", "swa_window", "swa_sink_size", "mla_kv_lora_rank"):
        assert key in args
    for key in ("n_head", "n_layer", "n_embd", "vocab_size"):
        assert key not in args  # never in the original argument dict (formats v1 §2)


def test_state_dict_looks_like_the_original() -> None:
    sd = _ckpt()["model"]
    block = _ckpt()["config"]["block_size"]
    masks = {k: v for k, v in sd.items() if k.endswith("attn.mask")}
    swa_layers = {k.split(".")[2] for k in sd if k.endswith("attn.q_proj.weight")}
    assert {k.split(".")[2] for k in masks} == swa_layers
    expected = torch.triu(torch.full((block, block), float("-inf")), diagonal=1)
    for m in masks.values():
        assert m.dtype == torch.float32 and m.shape == (block, block)
        assert torch.equal(m, expected)
    weights = [v for k, v in sd.items() if not k.endswith("attn.mask")]
    assert all(v.dtype == torch.bfloat16 for v in weights)
    assert torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"])  # tied


def test_infer_config_mixed_layers_and_vocab(monkeypatch: pytest.MonkeyPatch) -> None:
    ck = _ckpt()
    cfg = infer_config(ck["model"], ck["config"])
    assert cfg.layer_kinds == KINDS
    assert cfg.block_size == ck["config"]["block_size"] == 256  # read from the mask
    assert cfg.vocab_size == len(_tokenizer(monkeypatch))
    assert (cfg.n_head, cfg.kv_lora_rank, cfg.qk_nope_head_dim) == (4, 32, 32)
    assert (cfg.qk_rope_head_dim, cfg.v_head_dim) == (16, 32)
    assert cfg.tokenizer_name == "swamla-demo"


def test_tokenizer_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    tok = _tokenizer(monkeypatch)
    assert tok.eos_token == "<|endoftext|>"
    assert tok.eos_token_id is not None
    ids = tok.encode(PROMPT, add_special_tokens=False)
    assert tok.decode(ids) == PROMPT  # byte-level: lossless round trip
    assert tok.decode(tok.encode("naïve café 🙂", add_special_tokens=False)) == "naïve café 🙂"


def test_forward_gives_finite_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    tok = _tokenizer(monkeypatch)
    ids = torch.tensor([tok.encode(PROMPT, add_special_tokens=False)])
    model = _model()
    with torch.inference_mode():
        logits = model(ids)
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert torch.isfinite(logits).all()


def test_demo_is_small() -> None:
    size = sum(p.stat().st_size for p in DEMO_DIR.iterdir() if p.is_file())
    assert size < 5_000_000


def test_swamla_load_demo_folder() -> None:
    pytest.importorskip("swamla_tui.runtime.load")
    import swamla_tui

    lm = swamla_tui.load(DEMO_DIR, device="cpu")
    assert lm.config.layer_kinds == KINDS
    assert lm.tokenizer is not None and len(lm.tokenizer) == lm.config.vocab_size
    logits = lm.logits(torch.tensor([lm.encode(PROMPT)]))
    assert torch.isfinite(logits).all()
    reference = _model()(torch.tensor([lm.encode(PROMPT)]))
    assert torch.allclose(logits, reference, atol=1e-4)
    reply = lm.generate(PROMPT, stop=["\nYou:"], temperature=0.0, max_new_tokens=8)
    assert isinstance(reply, str)
