"""`swamla_tui.load()`: parity with the original model, every container and layout, devices.

The reference fixture is read in place (never copied); derived checkpoints are built in
tmp_path from its state dict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import swamla_tui
from swamla_tui.base.errors import CheckpointError, SwamlaError
from swamla_tui.checkpoint.reader import read_checkpoint
from swamla_tui.model.config import ModelConfig
from swamla_tui.model.layers import DynamicTanh
from swamla_tui.model.mla import MLABlock
from swamla_tui.model.transformer import SWAMLA
from tests.support.helpers import (
    FIXTURE_CKPT,
    FIXTURE_EXPECTED,
    fixture_args,
    fixture_checkpoint,
    fixture_expected,
    fixture_max_diff,
    fixture_state_dict,
    layer,
    run_python,
)

TOL = 1e-4  # float32 parity with the original, as the fixture README states
KINDS = ["swa", "swa", "mla", "swa", "swa", "mla"]


def _assert_reference(lm: Any, tol: float = TOL) -> None:
    d = fixture_max_diff(lm)
    assert d <= tol, f"max abs diff {d} > {tol}"


def _hub_bin(
    sd: dict[str, torch.Tensor], total_tokens: int = 500_000, **extra: Any
) -> dict[str, Any]:
    return {
        "model_state_dict": sd,
        "config": fixture_args(),
        "total_tokens": total_tokens,
        "val_loss": 2.3456,
        **extra,
    }


def _hub_folder(folder: Path, sd: dict[str, torch.Tensor], total_tokens: int, tok: Path | None):
    """One `checkpoint_tokens_*` folder as the training code uploads it."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(_hub_bin(sd, total_tokens), folder / "pytorch_model.bin")
    cfg = {
        "model_type": "swa_mla",
        "total_tokens": total_tokens,
        "val_loss": 2.3456,
        "training_config": fixture_args(),
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "README.md").write_text("# test checkpoint\n")
    if tok is not None:
        for f in tok.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
    return folder


# ------------------------------------------------------------------------------ parity
def test_parity_with_original_logits_at_every_position():
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False)
    exp = fixture_expected()
    assert exp["input_ids"].shape == (2, 96)
    got = lm.logits(exp["input_ids"])
    diff = (got - exp["logits"]).abs()
    per_pos = diff.amax(dim=-1)  # [2, 96]
    assert per_pos.shape == (2, 96)
    bad = (per_pos > TOL).nonzero().tolist()
    assert not bad, f"positions over {TOL}: {bad[:5]} (max {float(diff.max()):.3g})"
    assert lm.tokenizer is None
    assert lm.dtype == torch.float32 and lm.device.type == "cpu"


def test_config_inferred_from_fixture():
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False)
    c = lm.config
    assert c.layer_kinds == KINDS
    assert (c.n_layer, c.n_embd, c.n_head, c.n_kv_head) == (6, 64, 4, 4)
    assert (c.vocab_size, c.block_size) == (512, 128)
    assert (c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim) == (32, 16, 8, 16)
    assert (c.swa_window, c.swa_sink_size, c.q_lora_rank) == (16, 4, 0)
    assert c.norm == "rms" and c.bias is False and c.mlp_hidden == 256
    assert lm.n_params == 427968 == fixture_expected()["params"]
    assert lm.summary().startswith("427,968 params · 4 SWA + 2 MLA · float32 · cpu")
    assert lm.meta.get("format") == "training checkpoint"
    assert lm.meta.get("step") == fixture_checkpoint()["step"]
    assert lm.max_length == 128  # default 2048 clamps to block_size
    card = lm.card()
    assert card["parameters"] == "427,968"


def test_fp8_optimizer_state_loads_without_torchao():
    code = (
        "import sys\n"
        "from swamla_tui.checkpoint.reader import read_checkpoint\n"
        f"obj = read_checkpoint({str(FIXTURE_CKPT)!r})\n"
        "assert 'optimizer' in obj and obj['optimizer']['state'], sorted(obj)\n"
        "import swamla_tui\n"
        f"lm = swamla_tui.load({str(FIXTURE_CKPT)!r}, tokenizer=False)\n"
        "assert 'torchao' not in sys.modules, 'torchao was imported'\n"
        "assert not any(m.startswith('torchao.') for m in sys.modules)\n"
        "print('ok', lm.n_params)\n"
    )
    r = run_python(code)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ok 427968" in r.stdout
    # and in this process too
    obj = read_checkpoint(FIXTURE_CKPT)
    assert "optimizer" in obj
    assert "torchao" not in sys.modules
    state = obj["optimizer"]["state"]
    some = next(iter(state.values()))
    from swamla_tui.checkpoint.safety import OptimStateStandIn as _OptimStateStandIn

    assert any(
        isinstance(v, _OptimStateStandIn) and type(v).__name__ == "OptimStateFp8"
        for v in some.values()
    )


# ------------------------------------------------------------------------------ containers
def test_hub_style_pytorch_model_bin(tmp_path):
    p = tmp_path / "pytorch_model.bin"
    torch.save(_hub_bin(fixture_state_dict(), 2_000_000, step=1234), p)
    lm = swamla_tui.load(p, tokenizer=False)
    _assert_reference(lm)
    assert lm.meta["format"] == "hub checkpoint"
    assert lm.meta["total_tokens"] == 2_000_000
    assert lm.meta["val_loss"] == pytest.approx(2.3456)
    assert lm.meta["step"] == 1234
    assert lm.config.swa_window == 16 and lm.config.swa_sink_size == 4


def test_bare_state_dict(tmp_path):
    p = tmp_path / "bare.pt"
    torch.save(fixture_state_dict(), p)
    lm = swamla_tui.load(p, tokenizer=False)
    _assert_reference(lm)
    assert lm.meta["format"] == "state dict"
    # no argument dict: shapes still come from the weights, window/sinks take defaults
    c = lm.config
    assert c.layer_kinds == KINDS and c.n_head == 4 and c.block_size == 128
    assert (c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim) == (32, 16, 8, 16)


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_key_prefixes(tmp_path, prefix):
    sd = {prefix + k: v for k, v in fixture_state_dict().items()}
    p = tmp_path / "ckpt.pt"
    torch.save({"model": sd, "config": fixture_args(), "step": 7}, p)
    lm = swamla_tui.load(p, tokenizer=False)
    _assert_reference(lm)
    assert lm.config.layer_kinds == KINDS


def _stored(kind: str) -> dict[str, torch.Tensor]:
    sd = fixture_state_dict()
    out = {}
    for i, (k, v) in enumerate(sd.items()):
        if kind == "mixed":
            dt = torch.float16 if i % 2 else torch.bfloat16
        else:
            dt = getattr(torch, kind)
        out[k] = v.to(dt)
    # keep the tie: one tensor for both keys, as the training code saves it
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


# float32 compute of weights rounded to 16 bits: a few 1e-2 at most on this tiny model
_STORED_TOL = {"float16": 5e-2, "bfloat16": 2.5e-1, "mixed": 2.5e-1}
_LOAD_TOL = {torch.float32: 0.0, torch.bfloat16: 3e-1, torch.float16: 5e-2}


@pytest.mark.parametrize("stored", ["float16", "bfloat16", "mixed"])
@pytest.mark.parametrize("load_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_stored_half_precision(tmp_path, stored, load_dtype):
    p = tmp_path / "half.pt"
    torch.save({"model": _stored(stored), "config": fixture_args()}, p)
    lm = swamla_tui.load(p, tokenizer=False, dtype=load_dtype)
    assert lm.dtype == load_dtype
    assert all(t.dtype == load_dtype for t in lm.model.parameters())
    assert lm.model.lm_head.weight is lm.model.transformer.wte.weight
    if stored == "mixed":
        assert "bfloat16" in lm.stored_dtype and "float16" in lm.stored_dtype
        assert any("mixed stored dtypes" in n for n in lm.notices)
    else:
        assert lm.stored_dtype == stored
    got = lm.logits(fixture_expected()["input_ids"])
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    tol = _STORED_TOL[stored] + _LOAD_TOL[load_dtype]
    d = float((got - fixture_expected()["logits"]).abs().max())
    assert d <= tol, f"stored {stored}, loaded {load_dtype}: max abs diff {d} > {tol}"
    # the argmax mostly agrees with the reference
    agree = (got.argmax(-1) == fixture_expected()["logits"].argmax(-1)).float().mean()
    assert agree >= 0.9


def test_local_folder_flat_hub_layout(tmp_path, test_tokenizer_dir):
    folder = _hub_folder(tmp_path / "flat", fixture_state_dict(), 500_000, test_tokenizer_dir)
    lm = swamla_tui.load(folder)
    _assert_reference(lm)
    assert lm.tokenizer is not None
    assert Path(lm.tokenizer.name_or_path) == folder
    assert lm.decode(lm.encode("Hello there")) == "Hello there"
    assert lm.meta["total_tokens"] == 500_000


def _multi_folder(root: Path, tok: Path | None) -> dict[str, int]:
    """Three uploads: 500k, 2M (the latest) and 1.5M tokens; each with a tagged tensor."""
    sds = {}
    for name, tokens in (
        ("checkpoint_tokens_500k_loss_2.3456", 500_000),
        ("checkpoint_tokens_2M_loss_1.2345", 2_000_000),
        ("checkpoint_tokens_1.5M_loss_1.5000", 1_500_000),
    ):
        _hub_folder(root / name, fixture_state_dict(), tokens, tok)
        sds[name] = tokens
    (root / "README.md").write_text("repo readme\n")
    (root / "notes").mkdir()
    return sds


def test_folder_of_hub_checkpoints_picks_most_tokens(tmp_path, test_tokenizer_dir):
    _multi_folder(tmp_path, test_tokenizer_dir)
    lm = swamla_tui.load(tmp_path)
    assert lm.meta["total_tokens"] == 2_000_000
    assert lm.source.endswith("checkpoint_tokens_2M_loss_1.2345")
    assert Path(lm.tokenizer.name_or_path).name == "checkpoint_tokens_2M_loss_1.2345"
    _assert_reference(lm)


def test_folder_hf_checkpoint_picks_named(tmp_path):
    _multi_folder(tmp_path, None)
    name = "checkpoint_tokens_500k_loss_2.3456"
    lm = swamla_tui.load(tmp_path, tokenizer=False, hf_checkpoint=name)
    assert lm.meta["total_tokens"] == 500_000
    assert lm.source.endswith(name)
    with pytest.raises(CheckpointError) as ei:
        swamla_tui.load(tmp_path, tokenizer=False, hf_checkpoint="checkpoint_tokens_9M_loss_1.0")
    msg = str(ei.value)
    assert "\n" not in msg and "checkpoint_tokens_9M_loss_1.0" in msg
    assert "checkpoint_tokens_2M_loss_1.2345" in msg  # lists what is there


def test_legacy_non_zip_torch_save(tmp_path):
    p = tmp_path / "legacy.pt"
    torch.save(
        {"model": fixture_checkpoint()["model"], "config": fixture_args(), "step": 200},
        p,
        _use_new_zipfile_serialization=False,
    )
    import zipfile

    assert not zipfile.is_zipfile(p)
    lm = swamla_tui.load(p, tokenizer=False)
    _assert_reference(lm)
    assert lm.meta["step"] == 200


# ------------------------------------------------------------------------------ other shapes
def _synthetic_cfg() -> tuple[ModelConfig, dict[str, Any]]:
    cfg = ModelConfig(
        n_layer=4,
        n_embd=48,
        n_head=6,
        n_kv_head=2,
        vocab_size=97,
        block_size=64,
        layer_kinds=["swa", "mla", "swa", "mla"],
        swa_window=8,
        swa_sink_size=2,
        q_lora_rank=16,
        kv_lora_rank=16,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=12,
        norm="dyt",
        bias=True,
        mlp_hidden=4 * 48,
        tokenizer_name="openai-community/gpt2",
    )
    args = {
        "size": "small",
        "block_size": 64,
        "swa_layers_per_cycle": 1,
        "mla_layers_per_cycle": 1,
        "swa_window": 8,
        "swa_sink_size": 2,
        "mla_q_lora_rank": 16,
        "mla_kv_lora_rank": 16,
        "mla_qk_nope_head_dim": 8,
        "mla_qk_rope_head_dim": 4,
        "mla_v_head_dim": 12,
        "tokenizer_name": "openai-community/gpt2",
        "use_fp8": False,
        "compile": False,
    }
    return cfg, args


def test_synthetic_other_shapes_roundtrip(tmp_path):
    """GQA, q LoRA, DynamicTanh norms, linear biases, swa/mla cycle 1/1, C 48, 6 heads."""
    cfg, args = _synthetic_cfg()
    torch.manual_seed(0)
    model = SWAMLA(cfg).eval()
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if name.endswith("alpha"):
                prm.uniform_(0.3, 0.8)
            elif prm.ndim == 1:
                prm.copy_(
                    1.0 + 0.1 * torch.randn_like(prm)
                    if "weight" in name
                    else 0.05 * torch.randn_like(prm)
                )
            else:
                prm.normal_(0.0, 0.08)
    sd = {"_orig_mod." + k: v.clone() for k, v in model.state_dict().items()}
    assert "_orig_mod.lm_head.weight" in sd and "_orig_mod.transformer.h.0.norm1.alpha" in sd
    mask = torch.full((64, 64), float("-inf")).triu(1)
    for i, kind in enumerate(cfg.layer_kinds):
        if kind == "swa":
            sd[f"_orig_mod.transformer.h.{i}.attn.mask"] = mask
    p = tmp_path / "checkpoint_100.pt"
    torch.save(
        {"model": sd, "optimizer": {"state": {}, "param_groups": []}, "step": 100, "config": args},
        p,
    )

    lm = swamla_tui.load(p, tokenizer=False)
    got_cfg = lm.config.to_dict()
    want_cfg = cfg.to_dict()
    assert got_cfg == want_cfg, {
        k: (got_cfg[k], want_cfg[k]) for k in want_cfg if got_cfg[k] != want_cfg[k]
    }
    ids = torch.randint(0, cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(ids)
    got = lm.logits(ids)
    assert float((got - want).abs().max()) <= 1e-5
    assert lm.n_params == model.num_params()
    assert lm.config.n_swa == 2 and lm.config.n_mla == 2


def test_synthetic_dyt_alpha_shape_from_checkpoint(tmp_path):
    """DyT alpha stored as a [1] parameter (the usual DyT) loads; the layout is checked."""
    cfg, args = _synthetic_cfg()
    model = SWAMLA(cfg)
    ln_f = model.transformer.ln_f
    assert isinstance(ln_f, DynamicTanh)
    assert tuple(ln_f.alpha.shape) == (1,)
    sd = dict(model.state_dict())
    # a per-channel alpha ([C]) is a different DyT variant: refused with a clear one-line error
    sd["transformer.ln_f.alpha"] = torch.full((cfg.n_embd,), 0.5)
    p = tmp_path / "dyt_per_channel.pt"
    torch.save({"model": sd, "config": args}, p)
    with pytest.raises(CheckpointError) as ei:
        swamla_tui.load(p, tokenizer=False)
    msg = str(ei.value)
    assert "\n" not in msg and "transformer.ln_f.alpha" in msg


# ------------------------------------------------------------------------------ hub cache
_HASH = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(root: Path, tok: Path) -> Path:
    repo = root / "models--user--repo"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(_HASH)
    (repo / "blobs").mkdir()
    snap = repo / "snapshots" / _HASH
    _hub_folder(snap / "checkpoint_tokens_500k_loss_2.3456", fixture_state_dict(), 500_000, tok)
    _hub_folder(snap / "checkpoint_tokens_1.5M_loss_1.9876", fixture_state_dict(), 1_500_000, tok)
    (snap / "README.md").write_text("model card\n")
    return snap


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, test_tokenizer_dir):
    cache = tmp_path / "hub"
    snap = _hub_cache(cache, test_tokenizer_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # "user/repo" must not exist as a local path
    return snap


def test_hub_repo_id_from_cache_picks_latest(hub_cache):
    lm = swamla_tui.load("user/repo")
    assert lm.meta["total_tokens"] == 1_500_000
    assert lm.source == "user/repo/checkpoint_tokens_1.5M_loss_1.9876"
    assert lm.tokenizer is not None
    assert Path(lm.tokenizer.name_or_path) == hub_cache / "checkpoint_tokens_1.5M_loss_1.9876"
    assert lm.decode(lm.encode("Hello there")) == "Hello there"
    _assert_reference(lm)


def test_hub_repo_id_from_cache_hf_checkpoint(hub_cache):
    name = "checkpoint_tokens_500k_loss_2.3456"
    lm = swamla_tui.load("user/repo", hf_checkpoint=name, tokenizer=False)
    assert lm.meta["total_tokens"] == 500_000
    assert lm.source == f"user/repo/{name}"


def test_hub_repo_not_cached_offline(hub_cache):
    with pytest.raises(CheckpointError) as ei:
        swamla_tui.load("someone/not-cached", tokenizer=False)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "someone/not-cached" in msg and "offline" in msg.lower()


# ------------------------------------------------------------------------------ device/dtype
def test_cuda_without_cuda_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, device="cuda")
    assert lm.device.type == "cpu"
    assert any("CUDA" in n and "CPU" in n for n in lm.notices), lm.notices
    lm2 = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, device="auto")
    assert lm2.device.type == "cpu" and not lm2.notices


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("FLOAT32", torch.float32),
        ("bfloat16", torch.bfloat16),
        ("bf16", torch.bfloat16),
        ("torch.bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        ("fp16", torch.float16),
        ("half", torch.float16),
        ("auto", torch.float32),  # on the CPU
        (None, torch.float32),
        (torch.bfloat16, torch.bfloat16),
    ],
)
def test_dtype_strings(spec, want):
    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, dtype=spec)
    assert lm.dtype == want
    assert layer(lm.model, 2, MLABlock).attn.wkv_b.weight.dtype == want


@pytest.mark.parametrize("spec", ["int8", "float64", "fp8", "", torch.int8, torch.float64])
def test_bad_dtype(spec):
    with pytest.raises(SwamlaError) as ei:
        swamla_tui.load(FIXTURE_CKPT, tokenizer=False, dtype=spec)
    assert "\n" not in str(ei.value) and "dtype" in str(ei.value)


def test_bad_device_and_attention_mode():
    with pytest.raises(SwamlaError) as ei:
        swamla_tui.load("whatever.pt", device="tpu")
    assert "\n" not in str(ei.value)
    with pytest.raises(SwamlaError) as ei:
        swamla_tui.load("whatever.pt", swa_attention="sliding")
    assert "\n" not in str(ei.value)


def test_checkpoint_overwritten_in_place_after_load(tmp_path):
    """A trainer rewrites checkpoint files in place (torch.save truncates): the loaded model
    must not depend on the file any more (it was memory-mapped: SIGBUS before the fix)."""
    p = tmp_path / "checkpoint_200.pt"
    p.write_bytes(FIXTURE_CKPT.read_bytes())
    code = (
        "import torch, swamla_tui\n"
        f"lm = swamla_tui.load({str(p)!r}, tokenizer=False)\n"
        f"torch.save({{'x': torch.zeros(1)}}, {str(p)!r})\n"
        f"exp = torch.load({str(FIXTURE_EXPECTED)!r}, weights_only=True)\n"
        "d = (lm.logits(exp['input_ids']) - exp['logits']).abs().max().item()\n"
        "assert d <= 1e-4, d\n"
        "print('ok')\n"
    )
    r = run_python(code)
    assert r.returncode == 0, f"rc {r.returncode}: {r.stderr[-2000:]}"
    assert r.stdout.strip() == "ok"


def test_hub_file_progress_reports_counts():
    from swamla_tui.checkpoint.sources import file_progress

    lines: list[str] = []
    cls = file_progress(lines.append, "Downloading user/repo/ck")
    bar = cls(total=3, desc="Fetching 3 files")
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert lines == [f"Downloading user/repo/ck: {i}/3 files" for i in (1, 2, 3)]


_FAKE_8BIT = """
import sys, types, torch
for name in ("torchao", "torchao.optim", "torchao.optim.subclass_8bit"):
    sys.modules[name] = types.ModuleType(name)
class OptimState8bit(torch.Tensor):
    @staticmethod
    def __new__(cls, codes):
        return torch.Tensor._make_wrapper_subclass(cls, codes.shape, dtype=torch.float32)
    def __init__(self, codes):
        self.codes = codes
    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise NotImplementedError
OptimState8bit.__module__ = "torchao.optim.subclass_8bit"
sys.modules["torchao.optim.subclass_8bit"].OptimState8bit = OptimState8bit
sd = torch.load(sys.argv[1], weights_only=False, map_location="cpu")
st = OptimState8bit(torch.zeros(3, dtype=torch.uint8))
torch.save({"model": sd, "optimizer": {"state": {0: {"exp_avg": st}}}, "config": {}}, sys.argv[2])
"""


def test_other_torchao_optimizer_states_load_without_torchao(tmp_path):
    """An 8-bit AdamW state (torchao's OptimState8bit) gets the same inert stand-in."""

    from swamla_tui.checkpoint.safety import OptimStateStandIn as _OptimStateStandIn

    sd_path = tmp_path / "sd.pt"
    torch.save({k: v for k, v in read_checkpoint(FIXTURE_CKPT)["model"].items()}, sd_path)
    out = tmp_path / "ckpt8.pt"
    r = subprocess.run(
        [sys.executable, "-c", _FAKE_8BIT, str(sd_path), str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    obj = read_checkpoint(out)
    st = obj["optimizer"]["state"][0]["exp_avg"]
    assert isinstance(st, _OptimStateStandIn) and type(st).__name__ == "OptimState8bit"
    assert "torchao" not in sys.modules
    lm = swamla_tui.load(out, tokenizer=False)
    assert lm.config.n_layer == 6


def test_state_dict_without_lm_head_key_loads_tied(tmp_path):
    expected = fixture_expected()
    sd = {k: v for k, v in read_checkpoint(FIXTURE_CKPT)["model"].items() if "lm_head" not in k}
    path = tmp_path / "nohead.pt"
    torch.save({"model": sd, "config": {"swa_window": 16, "swa_sink_size": 4}}, path)
    lm = swamla_tui.load(path, tokenizer=False)
    assert lm.model.lm_head.weight is lm.model.transformer.wte.weight
    assert (lm.logits(expected["input_ids"]) - expected["logits"]).abs().max() <= 1e-4
