"""Export: safetensors folder, read back by our loader and by transformers (remote code)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import swamla_tui
from swamla_tui.base.errors import CheckpointError, SwamlaError
from swamla_tui.runtime.hf_export import (
    ExportError,
    export_checkpoint,
    flatten,
    is_export_folder,
    load_exported,
)
from tests.support.helpers import FIXTURE_CKPT, FIXTURE_EXPECTED, ROOT


def _header(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header: dict[str, Any] = json.loads(raw[8 : 8 + n])
    return header


@pytest.fixture(scope="module")
def exported(fixture_lm, tmp_path_factory) -> Path:
    return export_checkpoint(fixture_lm, tmp_path_factory.mktemp("export") / "out")


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    tensors: dict[str, Any] = torch.load(FIXTURE_EXPECTED, weights_only=True)
    return tensors


def test_folder_contents_and_config(fixture_lm, exported):
    names = {p.name for p in exported.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert {"configuration_swamla.py", "modeling_swamla.py", "swamla_model.py"} <= names
    assert not [n for n in names if n.endswith((".pt", ".bin", ".pkl")) or n.startswith(".")]
    cfg = json.loads((exported / "config.json").read_text())
    assert cfg["swamla_model"] == fixture_lm.config.to_dict()
    assert cfg["swamla_model"]["layer_kinds"] == ["swa", "swa", "mla", "swa", "swa", "mla"]
    assert cfg["swamla_model"]["tokenizer_name"] == fixture_lm.config.tokenizer_name
    prov = cfg["provenance"]
    assert prov["source"] == fixture_lm.source and prov["step"] == fixture_lm.meta["step"]
    assert {"total_tokens", "val_loss"} <= set(prov)
    assert cfg["auto_map"]["AutoModelForCausalLM"] == "modeling_swamla.SwamlaForCausalLM"
    assert cfg["tied_weights"] == {"lm_head.weight": "transformer.wte.weight"}
    assert is_export_folder(exported) and not is_export_folder(FIXTURE_CKPT.parent)


def test_safetensors_is_plain_tensors_head_stored_once(fixture_lm, exported):
    path = exported / "model.safetensors"
    assert path.read_bytes()[:2] != b"PK" and b"\x80\x02" not in path.read_bytes()[:16]
    head = _header(path)
    assert head.pop("__metadata__")["format"] == "pt"
    want = set(fixture_lm.model.state_dict()) - {"lm_head.weight"}
    assert set(head) == want  # no optimizer state, no attn.mask buffers, head once
    assert {v["dtype"] for v in head.values()} == {"F32"}
    n_bytes = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in head.values())
    assert n_bytes == 4 * fixture_lm.n_params


def test_load_exported_is_faithful(fixture_lm, exported, expected):
    lm = load_exported(exported)
    got = lm.logits(expected["input_ids"])
    assert (got - expected["logits"]).abs().max() <= 1e-4
    assert torch.equal(got, fixture_lm.logits(expected["input_ids"]))
    assert lm.n_params == expected["params"] == fixture_lm.n_params
    assert lm.meta["step"] == fixture_lm.meta["step"] and lm.meta["format"] == "safetensors export"
    assert lm.encode("Hello there") == fixture_lm.encode("Hello there")
    greedy = lm.generate_ids(
        expected["prompt_ids"].tolist(), max_new_tokens=60, temperature=1.0, top_k=1,
        top_p=1.0, repetition_penalty=1.0,
    )  # fmt: skip
    assert greedy == expected["greedy_ids"].tolist()


def test_bfloat16_export(tmp_path, expected):
    lm16 = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, dtype="bfloat16")
    out = export_checkpoint(lm16, tmp_path / "bf16", dtype="bfloat16")
    head = _header(out / "model.safetensors")
    head.pop("__metadata__")
    assert {v["dtype"] for v in head.values()} == {"BF16"}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    back = load_exported(out, tokenizer=False, dtype="bfloat16")
    ids = expected["input_ids"]
    assert torch.equal(back.logits(ids), lm16.logits(ids))
    f32 = load_exported(out, tokenizer=False)  # float32 from bf16 weights: close, not equal
    assert (f32.logits(ids) - expected["logits"]).abs().max() < 0.5


def test_reexport_replaces_and_other_folders_are_refused(fixture_lm, tmp_path):
    out = export_checkpoint(fixture_lm, tmp_path / "x")
    export_checkpoint(fixture_lm, out, dtype="bf16")  # an earlier export: replaced
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert not [p for p in out.iterdir() if p.name.startswith(".export-")]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for target, words in ((busy, "not empty"), (afile, "not a folder")):
        with pytest.raises(ExportError, match=words) as e:
            export_checkpoint(fixture_lm, target)
        assert "\n" not in str(e.value)
    with pytest.raises(ExportError, match="float32 or bfloat16"):
        export_checkpoint(fixture_lm, tmp_path / "y", dtype="int8")
    assert (busy / "notes.txt").read_text() == "mine" and not (tmp_path / "y").exists()


def test_load_exported_bad_folders_are_one_line(exported, tmp_path):
    def broken(name: str) -> Path:
        d: Path = tmp_path / name
        shutil.copytree(exported, d)
        return d

    cases = []
    d = broken("noconfig")
    (d / "config.json").unlink()
    cases.append((d, "no config.json"))
    d = broken("garbage")
    (d / "config.json").write_text("{not json")
    cases.append((d, "unreadable"))
    d = broken("truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    cases.append((d, "safetensors"))
    d = broken("unknown_field")
    cfg = json.loads((d / "config.json").read_text())
    cfg["swamla_model"]["moe_experts"] = 8
    (d / "config.json").write_text(json.dumps(cfg))
    cases.append((d, "moe_experts"))
    d = broken("shape")
    cfg = json.loads((d / "config.json").read_text())
    cfg["swamla_model"]["mlp_hidden"] = 128
    (d / "config.json").write_text(json.dumps(cfg))
    cases.append((d, "has shape"))
    d = broken("newer")
    cfg = json.loads((d / "config.json").read_text())
    cfg["swamla_export"] = 99
    (d / "config.json").write_text(json.dumps(cfg))
    cases.append((d, "newer"))
    for folder, words in cases:
        with pytest.raises(CheckpointError) as e:
            load_exported(folder, tokenizer=False)
        assert words in str(e.value) and "\n" not in str(e.value), (folder.name, str(e.value))
    with pytest.raises(SwamlaError, match="swa_attention"):
        load_exported(exported, swa_attention="sliding")


# ------------------------------------------------------------------------------ remote code
def test_flat_model_code_is_self_contained(exported):
    flat = sorted(exported.glob("swamla_*.py"))
    model_files = sorted((ROOT / "swamla_tui" / "model").glob("*.py"))
    assert len([f for f in flat if f.name.startswith("swamla_model")]) == len(model_files)
    assert (exported / "swamla_base_errors.py").is_file()  # config.py imports ..base.errors
    for f in [*flat, exported / "modeling_swamla.py", exported / "configuration_swamla.py"]:
        text = f.read_text()
        assert "from .." not in text and "swamla_tui." not in text.replace("# Copied from", "")


def test_flatten_follows_new_modules_and_subpackages(tmp_path, monkeypatch):
    """A layer kind added later (here a subpackage importing up two levels) is exported."""
    pkg = tmp_path / "swamla_tui"
    shutil.copytree(ROOT / "swamla_tui" / "model", pkg / "model")
    shutil.copytree(ROOT / "swamla_tui" / "base", pkg / "base")
    (pkg / "__init__.py").write_text("")
    kind = pkg / "model" / "newkind"
    kind.mkdir()
    (kind / "__init__.py").write_text("from .block import NewBlock\n")
    (kind / "block.py").write_text(
        "from __future__ import annotations\n\n"
        "from ...base.params import SamplingParams\n"
        "from ..layers import (\n    RMSNorm,\n    make_norm,  # a comment\n)\n"
        "from swamla_tui.base.errors import SwamlaError\n\n"
        "class NewBlock:\n    parts = (SamplingParams, RMSNorm, make_norm, SwamlaError)\n"
    )
    monkeypatch.setattr(flatten, "PKG_ROOT", pkg)
    out = tmp_path / "flat_pkg"
    out.mkdir()
    (out / "__init__.py").write_text("")
    names = flatten.flatten_into(out)
    assert {
        "swamla_model_newkind.py",
        "swamla_model_newkind_block.py",
        "swamla_base_params.py",
    } <= set(names)
    block = (out / "swamla_model_newkind_block.py").read_text()
    assert "from .swamla_base_params import SamplingParams" in block
    assert "from .swamla_model_layers import RMSNorm, make_norm" in block
    assert "from .swamla_base_errors import SwamlaError" in block
    proc = subprocess.run(
        [sys.executable, "-c", "import flat_pkg.swamla_model_newkind as m; print(m.NewBlock.parts)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "swamla_base_params.SamplingParams" in proc.stdout


def test_flatten_refuses_what_remote_code_cannot_copy(tmp_path, monkeypatch):
    pkg = tmp_path / "swamla_tui"
    (pkg / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model" / "__init__.py").write_text("from . import layers\n")
    (pkg / "model" / "layers.py").write_text("X = 1\n")
    monkeypatch.setattr(flatten, "PKG_ROOT", pkg)
    with pytest.raises(flatten.FlattenError, match="cannot be flattened"):
        flatten.flatten_into(tmp_path)


def test_transformers_loads_the_export(exported, expected, tmp_path):
    out = tmp_path / "result.json"
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "hf_remote_check.py"), str(exported),
         str(FIXTURE_EXPECTED), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["class"] == "SwamlaForCausalLM" and res["dtype"] == "torch.float32"
    assert res["max_diff_vs_fixture"] <= 1e-4
    assert res["greedy"] == expected["greedy_ids"][:, :12].tolist()
    assert res["left_pad_diff"] <= 1e-5 and res["right_pad_diff"] <= 1e-5
    assert res["loss_diff"] <= 1e-5
    assert res["pipeline_text_starts"] is True
    assert res["swamla_tui_imported"] is False  # the folder runs on its own
    assert res["encoded"] == load_exported(exported).encode("Hello there, how are you?")


_TOKENIZER_ONLY = """
import json, sys
from transformers import AutoTokenizer, PreTrainedTokenizerFast
folder, how = sys.argv[1], sys.argv[2]
if how == "fast":
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
elif how == "auto_no_code":
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
else:
    tok = AutoTokenizer.from_pretrained(folder)
print("IDS=" + json.dumps(tok.encode(sys.argv[3], add_special_tokens=False)))
print("CLASS=" + type(tok).__name__)
"""
_TEXT = "Hello there, how are you? é ü ß 日本 🙂"


def _tokenizer_subprocess(
    folder: Path, how: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-c", _TOKENIZER_ONLY, str(folder), how, _TEXT],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_tokenizer_config_names_a_built_in_class(exported):
    cfg = json.loads((exported / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "auto_map" not in cfg and "local_files_only" not in cfg


@pytest.mark.parametrize("how", ["fast", "auto_no_code"])
def test_tokenizer_loads_without_the_models_code(fixture_lm, exported, tmp_path, how):
    proc = _tokenizer_subprocess(exported, how, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "custom code" not in proc.stdout + proc.stderr  # never asked, stdin closed
    assert f"IDS={json.dumps(fixture_lm.encode(_TEXT))}" in proc.stdout
    assert not (tmp_path / "modules").exists()  # no module of the folder was imported


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


@pytest.mark.xfail(
    _transformers_major() >= 5,
    strict=True,
    reason="transformers 5's AutoTokenizer reads config.json with AutoConfig first, which asks "
    "about the model's auto_map whatever tokenizer_config.json says",
)
def test_plain_auto_tokenizer_does_not_ask(fixture_lm, exported, tmp_path):
    proc = _tokenizer_subprocess(exported, "auto", tmp_path)
    assert "custom code" not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"IDS={json.dumps(fixture_lm.encode(_TEXT))}" in proc.stdout


# ------------------------------------------------------- round trip per checkpoint kind
# Every kind the loader reads exports and loads back with the source's logits: through
# `load()`, through `--checkpoint DIR` (the card, a headless batch) and through transformers.
KINDS = ("v1", "v2_deltanet_latent_moe", "engram")
DTYPES = ("float32", "bfloat16")
TOL = {"float32": 1e-4, "bfloat16": 0.05}  # bf16: the same rounded weights; kernels may differ


@pytest.fixture(scope="module")
def kind_sources(test_tokenizer_dir, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """{kind: (checkpoint, tokenizer folder)}; Engram is built here (no fixture has one)."""
    from transformers import AutoTokenizer

    from swamla_tui.model.token_map import token_mapping
    from swamla_tui.model.transformer import SWAMLA
    from tests.support.helpers import (
        V2_CKPT,
        V2_TOKENIZER,
        random_init_,
        v2_args,
        v2_state_dict,
        v2_variant_config,
    )

    cfg = v2_variant_config("engram")
    model = SWAMLA(cfg).eval()
    random_init_(model, seed=11)
    vocab = dict(AutoTokenizer.from_pretrained(str(V2_TOKENIZER)).get_vocab())
    model.set_token_mapping(token_mapping(vocab, cfg.vocab_size))
    engram = tmp_path_factory.mktemp("engram") / "engram.pt"
    ckpt = {"model_state_dict": v2_state_dict(model), "step": 7, "config": v2_args(cfg)}
    torch.save(ckpt, engram)
    return {
        "v1": (FIXTURE_CKPT, test_tokenizer_dir),
        "v2_deltanet_latent_moe": (V2_CKPT, V2_TOKENIZER),
        "engram": (engram, V2_TOKENIZER),
    }


@pytest.fixture(scope="module")
def kind_exports(kind_sources, tmp_path_factory) -> dict[tuple[str, str], tuple[Any, Path]]:
    """{(kind, dtype): (source LoadedModel in dtype, its export in dtype)}."""
    root = tmp_path_factory.mktemp("kinds")
    out = {}
    for kind, (ckpt, tok) in kind_sources.items():
        for dt in DTYPES:
            src = swamla_tui.load(ckpt, tokenizer=tok, dtype=dt)
            out[kind, dt] = (src, export_checkpoint(src, root / f"{kind}-{dt}", dtype=dt))
    return out


def _kind_ids() -> torch.Tensor:
    return torch.randint(0, 384, (2, 40), generator=torch.Generator().manual_seed(3))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_loads_back_with_the_same_logits(kind_exports, kind, dt):
    src, out = kind_exports[kind, dt]
    back = swamla_tui.load(out, dtype=dt)
    assert back.config == src.config and back.dtype == src.dtype
    ids = _kind_ids()
    assert _max_diff(back.logits(ids), src.logits(ids)) <= TOL[dt]
    if src.model.engram_map is not None:  # the token map comes from config.json
        assert back.model.engram_map is not None
        assert torch.equal(back.model.engram_map.cpu(), src.model.engram_map.cpu())
    assert back.encode("Hello there") == src.encode("Hello there")


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_runs_through_checkpoint_dir(kind_sources, kind_exports, kind, dt, tmp_path):
    """`--checkpoint EXPORT_DIR`: the card prints, and a greedy headless batch writes the
    same completions as the source checkpoint."""
    from swamla_tui.cli.main import main

    src_ckpt, tok = kind_sources[kind]
    _, out = kind_exports[kind, dt]
    assert main(["--checkpoint", str(out), "--dtype", dt, "--info"]) == 0
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello there\nThe quick brown fox\n")
    greedy = ["--temperature", "0", "--top_k", "1", "--max_new_tokens", "8", "--dtype", dt]
    rows = {}
    for name, flags in (
        ("src", ["--checkpoint", str(src_ckpt), "--tokenizer", str(tok)]),
        ("export", ["--checkpoint", str(out)]),
    ):
        result = tmp_path / f"{name}.jsonl"
        argv = [*flags, *greedy, "--prompts_file", str(prompts), "--output", str(result)]
        assert main(argv) == 0, name
        rows[name] = [json.loads(line) for line in result.read_text().splitlines()]
    assert [r["completion"] for r in rows["export"]] == [r["completion"] for r in rows["src"]]
    assert all(r["new_tokens"] == 8 or r["finish_reason"] == "eos" for r in rows["export"])


def test_each_kind_loads_in_transformers(kind_exports, tmp_path):
    """AutoModelForCausalLM(trust_remote_code=True) on every export, in one fresh process."""
    ids = _kind_ids()
    torch.save(ids, tmp_path / "ids.pt")
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    folders = [str(out) for _, out in kind_exports.values()]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "hf_remote_logits.py"),
         str(tmp_path / "ids.pt"), str(tmp_path / "out.pt"), *folders],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = torch.load(tmp_path / "out.pt", weights_only=True)
    assert res.pop("swamla_tui_imported") is False
    for (kind, dt), (src, out) in kind_exports.items():
        got = res[str(out)]
        assert got["dtype"] == f"torch.{dt}", (kind, dt)
        diff = _max_diff(got["logits"], src.logits(ids))
        assert diff <= TOL[dt], (kind, dt, diff)


def test_every_exported_file_has_the_same_mode(exported):
    """The weights were written 0600 by safetensors while the rest was 0644."""
    umask = os.umask(0)
    os.umask(umask)
    modes = {f.name: f.stat().st_mode & 0o777 for f in exported.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes
