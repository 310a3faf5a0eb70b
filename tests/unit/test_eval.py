"""The CLI's --perplexity, --compare, --stride and --export, run end to end on the reference fixture."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from swamla_tui.cli.main import build_parser, check_args, main
from tests.support.helpers import FIXTURE_CKPT

TEXT = "You: Hello there, how are you today?\nAssistant: I am fine, thank you. " * 8


def _model_flags(tokenizer_dir) -> list[str]:
    return ["--checkpoint", str(FIXTURE_CKPT), "--tokenizer", str(tokenizer_dir), "--device", "cpu"]


def test_perplexity_with_compare_prints_and_writes_json(test_tokenizer_dir, tmp_path, capsys):
    text = tmp_path / "held_out.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "result.json"
    argv = [*_model_flags(test_tokenizer_dir), "--compare", str(FIXTURE_CKPT)]
    argv += ["--perplexity", str(text), "--stride", "32", "--max_length", "64"]
    assert main([*argv, "--output", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["checkpoint", "tokens", "loss", "perplexity"]
    assert len(table) == 3 + 6  # two rows, then the KL(A||B) lines
    data = json.loads(out.read_text(encoding="utf-8"))
    fields = {"checkpoint", "tokens", "loss", "perplexity", "bits_per_byte", "seconds"}
    assert [set(d) for d in data] == [fields, fields | {"kl"}]
    assert data[0]["loss"] == pytest.approx(data[1]["loss"])
    assert data[0]["tokens"] > 64  # more than one window was scored
    # the same run with a .csv name writes CSV (it once wrote JSON into the .csv)
    out_csv = tmp_path / "result.csv"
    assert main([*argv, "--output", str(out_csv)]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(out_csv.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 2 and rows[0]["checkpoint"] == data[0]["checkpoint"]
    assert float(rows[1]["loss"]) == pytest.approx(data[1]["loss"])
    assert rows[0]["kl_mean"] == "" and float(rows[1]["kl_mean"]) == pytest.approx(
        data[1]["kl"]["mean"]
    )


def test_stride_changes_the_result(test_tokenizer_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    losses = []
    for stride in ("8", "56"):
        out = tmp_path / f"r{stride}.json"
        argv = [*_model_flags(test_tokenizer_dir), "--perplexity", str(text), "--max_length", "64"]
        assert main([*argv, "--stride", stride, "--output", str(out)]) == 0
        losses.append(json.loads(out.read_text(encoding="utf-8"))[0]["loss"])
    assert losses[0] != pytest.approx(losses[1], abs=1e-9)


def test_windows_rolling_scores_other_windows(test_tokenizer_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 2, encoding="utf-8")
    argv = [*_model_flags(test_tokenizer_dir), "--perplexity", str(text), "--max_length", "64"]
    got = {}
    for mode in ("strided", "rolling"):
        out = tmp_path / f"{mode}.json"
        assert main([*argv, "--windows", mode, "--output", str(out)]) == 0
        got[mode] = json.loads(out.read_text(encoding="utf-8"))[0]
    assert got["strided"]["tokens"] == got["rolling"]["tokens"] > 64
    assert got["strided"]["loss"] != pytest.approx(got["rolling"]["loss"], abs=1e-6)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "no such file"), (b"\x00\x01\x02binary\xff", "")],
)
def test_bad_perplexity_file_is_one_line(tmp_path, capsys, content, fragment):
    f = tmp_path / "in.txt"
    if content is not None:
        f.write_bytes(content)
    assert main(["--checkpoint", str(FIXTURE_CKPT), "--perplexity", str(f)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("swamla-tui: error: ") and "\n" not in err
    assert fragment in err and "…" not in err  # refused before any model loads


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--perplexity", "a", "--export", "b"], "give either --perplexity or --export, not both"),
        (["--stride", "4"], "--stride applies only to --perplexity"),
        (["--perplexity", "a", "--stride", "0"], "--stride must be >= 1, got 0"),
        (["--windows", "rolling"], "--windows applies only to --perplexity"),
        (
            ["--perplexity", "a", "--windows", "rolling", "--stride", "4"],
            "--stride applies to --windows strided, not rolling",
        ),
        (["--export", "o", "--compare", "b"], "--compare does not apply to --export"),
        (["--info", "--compare", "b"], "--compare does not apply to --info"),
        (["--logprobs", "0", "--output", "o.jsonl"], "--logprobs must be between 1 and 20, got 0"),
        (
            ["--logprobs", "21", "--output", "o.jsonl"],
            "--logprobs must be between 1 and 20, got 21",
        ),
        (
            ["--logprobs", "3", "--output", "o.csv"],
            "--logprobs writes JSONL only: give --output FILE.jsonl "
            "(CSV and Markdown have no column for it)",
        ),
        (
            ["--logprobs", "3"],
            "--logprobs applies only to --mode batch (--output FILE.jsonl, or JSONL on stdout)",
        ),
        (
            ["--logprobs", "3", "--output", "o.jsonl", "--compare", "b"],
            "--logprobs does not apply to --compare",
        ),
    ],
)
def test_eval_flag_combinations(argv, message):
    assert check_args(build_parser().parse_args(argv)) == message


def test_export_then_load_gives_the_same_logits(test_tokenizer_dir, tmp_path, fixture_lm, capsys):
    import swamla_tui

    out = tmp_path / "exported"
    assert (
        main([*_model_flags(test_tokenizer_dir), "--dtype", "float32", "--export", str(out)]) == 0
    )
    assert "exported" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    back = swamla_tui.load(out)
    ids = torch.tensor([fixture_lm.encode("Hello there, how are you?")])
    assert torch.allclose(back.logits(ids), fixture_lm.logits(ids), atol=1e-5)
    assert back.encode("Hello") == fixture_lm.encode("Hello")


def test_export_refuses_float16_in_one_line(test_tokenizer_dir, tmp_path, capsys):
    argv = [
        *_model_flags(test_tokenizer_dir),
        "--dtype",
        "float16",
        "--export",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "swamla-tui: error: export dtype must be float32 or bfloat16, not 'float16'"


def test_info_on_engram_without_its_tokenizer_prints_the_card(tmp_path, capsys):
    """An Engram checkpoint whose tokenizer is not found: ``--info`` prints the card with
    "not found" and exits 0, naming the tokenizer looked for and ``--tokenizer PATH``;
    loading it to run is one line that says the same (no flag that does not exist)."""
    import shutil

    import swamla_tui
    from swamla_tui.base.errors import SwamlaError
    from tests.support.g7 import G7_CKPT

    alone = tmp_path / G7_CKPT.name  # without the tok384 folder beside it
    shutil.copy(G7_CKPT, alone)
    assert main(["--checkpoint", str(alone), "--info"]) == 0
    out, err = capsys.readouterr()
    card = dict(line.strip().split("  ", 1) for line in out.strip().splitlines())
    assert card["tokenizer"].strip() == "not found"
    assert "Engram needs the tokenizer 'tok384' to run (not found): pass --tokenizer PATH" in err
    assert "--no-tokenizer" not in out + err
    with pytest.raises(SwamlaError) as exc:
        swamla_tui.load(alone, tokenizer=False)
    msg = str(exc.value)
    assert "\n" not in msg and "'tok384'" in msg and "--tokenizer PATH" in msg
