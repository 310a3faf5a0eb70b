"""An export folder's config.json is untrusted (issue 21 item 5): every hostile value is a
one-line CheckpointError naming the key, before anything is built or allocated."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from swamla_tui.base.errors import CheckpointError
from swamla_tui.runtime.hf_export import export_checkpoint, load_exported
from swamla_tui.runtime.hf_export.schema import MAX_CONFIG_BYTES, MAX_DEPTH, json_depth
from tests.support.hostile import run_limited


@pytest.fixture(scope="module")
def exported(fixture_lm, tmp_path_factory) -> Path:
    return export_checkpoint(fixture_lm, tmp_path_factory.mktemp("export") / "out")


@pytest.fixture(scope="module")
def base_config(exported) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((exported / "config.json").read_text())
    return data


def folder_with(exported: Path, where: Path, config: dict[str, Any] | str) -> Path:
    """A copy of the export (weights linked, not copied) with `config` as config.json."""
    where.mkdir(parents=True, exist_ok=True)
    for f in exported.iterdir():
        if f.name != "config.json":
            (where / f.name).symlink_to(f)
    text = config if isinstance(config, str) else json.dumps(config)
    (where / "config.json").write_text(text)
    return where


def with_model(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    data["swamla_model"].update(changes)
    return data


def refused(folder: Path) -> str:
    with pytest.raises(CheckpointError) as exc:
        load_exported(folder, tokenizer=False)
    text = str(exc.value)
    assert text and "\n" not in text
    return text


# (changes to swamla_model, words the message must hold)
BAD_FIELDS = [
    ({"n_embd": -64}, "'swamla_model.n_embd' is -64, out of range"),
    ({"n_layer": 6.0}, "'swamla_model.n_layer' must be an integer, not 6.0"),
    ({"vocab_size": "512"}, "'swamla_model.vocab_size' must be an integer"),
    ({"n_head": True}, "'swamla_model.n_head' must be an integer, not true"),
    ({"attn_factor": float("nan")}, "unreadable (NaN is not a number JSON allows)"),
    ({"attn_factor": 1e300}, "'swamla_model.attn_factor' is 1e+300, out of range"),
    ({"n_embd": 2**40}, "'swamla_model.n_embd' is 1099511627776, out of range"),
    ({"block_size": 200_000_000}, "'swamla_model.block_size' is 200000000, out of range"),
    ({"n_layer": 1_000_000}, "'swamla_model.n_layer' is 1000000, out of range"),
    ({"layer_kinds": ["swa"] * 5 + ["attention"]}, "'swamla_model.layer_kinds[5]' must be one of"),
    ({"layer_kinds": ["swa"] * 5}, "'swamla_model.layer_kinds' has 5 kinds for 6 layers"),
    ({"n_kv_head": 3}, "'swamla_model.n_kv_head' 3 does not divide n_head 4"),
    ({"norm": ["rms"]}, "'swamla_model.norm' must be one of rms, dyt"),
    ({"deltanet": "yes"}, "'swamla_model.deltanet' must be an object"),
    ({"moe": {"latent": False}}, "'swamla_model.moe.n_experts' is missing"),
    ({"evil": 1}, "'swamla_model.evil' is not a field this version knows"),
    ({"extra": []}, "'swamla_model.extra' must be an object"),
    ({"tokenizer_name": "x" * 10_000}, "'swamla_model.tokenizer_name' must be a text"),
    # in range, but not what model.safetensors holds: refused before building
    (
        {"n_layer": 7, "layer_kinds": ["swa"] * 7},
        "'swamla_model.n_layer' is 7 but model.safetensors holds layers 0-5",
    ),
    ({"n_embd": 1024}, "vocab_size x n_embd = 512 x 1024, but transformer.wte.weight is 512 x 64"),
]


@pytest.mark.parametrize(("changes", "says"), BAD_FIELDS, ids=[str(c)[:40] for c, _ in BAD_FIELDS])
def test_bad_fields_are_one_line_errors_naming_the_key(
    exported, base_config, tmp_path, changes, says
):
    data = with_model(base_config, **changes)
    text = json.dumps(data, allow_nan=True)
    assert says in refused(folder_with(exported, tmp_path / "x", text))


@pytest.mark.parametrize(
    ("tied", "says"),
    [
        ({"lm_head.weight": "nope.weight"}, 'names "nope.weight", not a parameter'),
        ({"lm_head.weight": "lm_head.weight"}, "must name another stored tensor"),
        ({"transformer.wte.weight": "lm_head.weight"}, "must tie a tensor that is not stored"),
        ({"lm_head.weight": 3}, "must name another stored tensor"),
        ({"__class__": "transformer.wte.weight"}, 'names "__class__", not a parameter'),
        (
            {"lm_head.weight": "transformer.h.0.attn.q_proj.weight"},
            "ties tensors of different shapes",
        ),
        (["lm_head.weight"], "'tied_weights' must be an object"),
    ],
)
def test_odd_tied_weights_are_refused(exported, base_config, tmp_path, tied, says):
    data = copy.deepcopy(base_config)
    data["tied_weights"] = tied
    assert says in refused(folder_with(exported, tmp_path / "x", data))


def test_deep_huge_and_odd_files(exported, base_config, tmp_path):
    deep = '{"swamla_export": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert f"nested deeper than {MAX_DEPTH} levels" in refused(
        folder_with(exported, tmp_path / "a", deep)
    )
    big = json.dumps(base_config)[:-1] + ', "pad": "' + "x" * MAX_CONFIG_BYTES + '"}'
    assert "larger than 64 MB" in refused(folder_with(exported, tmp_path / "b", big))
    assert "not a JSON object" in refused(folder_with(exported, tmp_path / "c", "[1, 2]"))
    prov = copy.deepcopy(base_config)
    prov["provenance"] = ["not", "a", "dict"]  # ignored, not an AttributeError
    assert load_exported(folder_with(exported, tmp_path / "d", prov), tokenizer=False).n_params > 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.timeout(30)
def test_a_fifo_config_is_refused_unopened(exported, tmp_path):
    folder = folder_with(exported, tmp_path / "x", "{}")
    (folder / "config.json").unlink()
    os.mkfifo(folder / "config.json")
    assert "FIFO" in refused(folder)


def test_depth_ignores_brackets_inside_strings():
    assert json_depth('{"a": "[[[[[[", "b": [1, {"c": 2}]}') == 3


def test_hostile_sizes_under_a_memory_limit(exported, base_config, tmp_path):
    """block_size 2e8 (was: a 12.8 GB RoPE table), n_layer 1,000,000 (was: > 90 s of
    module building) and huge dimensions: refused in a process that may map 512 MB more."""
    cases = {
        "block": with_model(base_config, block_size=200_000_000),
        "layers": with_model(base_config, n_layer=1_000_000, layer_kinds=["swa"] * 1_000_000),
        "dims": with_model(base_config, n_embd=2**20, vocab_size=2**22, mlp_hidden=2**24),
    }
    folders = {k: str(folder_with(exported, tmp_path / k, v)) for k, v in cases.items()}
    out = run_limited(
        f"""
        import time
        from swamla_tui.runtime.hf_export import load_exported
        for name, folder in {folders!r}.items():
            t0 = time.perf_counter()
            try:
                load_exported(folder, tokenizer=False)
                print("LOADED", name)
            except SwamlaError as e:
                print("REFUSED", name, round(time.perf_counter() - t0, 1), str(e))
        """,
        timeout=120,
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("REFUSED", "LOADED"))]
    assert [ln.split()[:2] for ln in lines] == [["REFUSED", k] for k in cases], out.stdout
    assert all(float(ln.split()[2]) < 10 for ln in lines), lines
