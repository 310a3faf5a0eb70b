"""The trainer's latest inference.py flags (formats G7 §10), with our meaning, run in-process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swamla_tui.cli.main import app_options, build_parser, check_args, main, params_from_args
from tests.support.helpers import FIXTURE_CKPT

TEXT = "You: Hello there, how are you today?\nAssistant: I am fine, thank you. " * 4


def _flags(tok: Path) -> list[str]:
    return ["--tokenizer", str(tok), "--device", "cpu"]


def _args(*argv: str):
    return build_parser().parse_args(list(argv))


def test_every_older_flag_still_parses() -> None:
    argv = [
        "--checkpoint", "x.pt", "--mode", "batch", "--prompts_file", "p.txt",
        "--max_new_tokens", "7", "--temperature", "0.5", "--top_k", "3", "--top_p", "0.8",
        "--repetition_penalty", "1.2", "--device", "cpu", "--dtype", "float32",
        "--max_length", "64", "--system_prompt", "be brief", "--chatml",
        "--hf_checkpoint", "base/checkpoint_tokens_2.00B_loss_3.1000", "--seed", "1",
    ]  # fmt: skip
    args = _args(*argv)
    assert check_args(args) is None
    assert (args.max_new_tokens, args.top_k, args.system_prompt) == (7, 3, "be brief")
    assert params_from_args(args).temperature == 0.5


def test_greedy_is_temperature_zero() -> None:
    assert params_from_args(_args("--greedy", "--temperature", "1.3")).temperature == 0.0
    assert params_from_args(_args()).temperature == 0.8
    p = params_from_args(_args("--greedy"))
    assert p.repetition_penalty == 1.1  # still applied, as in the trainer's script


def test_debug_turns_probabilities_on_at_start() -> None:
    assert app_options(_args("--debug"), None).probs is True
    assert app_options(_args(), None).probs is None  # the remembered /probs setting


def test_inspector_starts_with_debug_probs(tmp_path: Path) -> None:
    from swamla_tui.ui.chat.inspector import start_probs
    from swamla_tui.ui.options import AppOptions

    class Settings:
        def get(self, _key: str, default: object) -> object:
            return False  # remembered: off

    for probs, want in ((True, True), (None, False), (False, False)):
        assert start_probs(AppOptions(probs=probs), Settings()) is want


def test_selection_flags_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--checkpoint", str(FIXTURE_CKPT), "--nb_tok", "lots", "--info"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("swamla-tui: error: --nb_tok 'lots'") and "\n" not in err
    with pytest.raises(SystemExit) as e:
        _args("--hf_checkpoint_strategy", "newest")
    assert e.value.code == 2
    args = _args("--hf_checkpoint_strategy", "best_loss", "--nb_tok", "3.5b", "--instruct")
    assert check_args(args) is None


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--eval_perplexity", "hi", "--perplexity", "f.txt"], "not several"),
        (["--diagnose", "--export", "out"], "not several"),
        (["--diagnose", "--info"], "--diagnose does not apply to --info"),
        (["--stride", "4"], "--stride applies only to --perplexity"),
        (["--perplexity", "f.txt", "--export", "o"], "give either --perplexity or --export"),
    ],
)
def test_conflicting_actions(extra: list[str], fragment: str) -> None:
    assert fragment in (check_args(_args("--checkpoint", "x.pt", *extra)) or "")


@pytest.fixture()
def run_folder(tmp_path: Path) -> Path:
    """A training run folder of G7 names (copies of the v1 fixture: contents do not matter)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in (
        "checkpoint_base_999_00M_step100.pt",
        "checkpoint_base_1_00B_step7629.pt",
        "checkpoint_instruct_pt1_00B_it20_0M_step8000.pt",
        "checkpoint_12000.pt",
    ):
        shutil.copy(FIXTURE_CKPT, run / name)
    return run


def _info(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    rc = main(argv)
    return rc, capsys.readouterr().out.splitlines()


def _source(lines: list[str]) -> str:
    return next(line.split()[-1] for line in lines if line.strip().startswith("source"))


def test_info_on_run_folder_lists_and_marks(run_folder, test_tokenizer_dir, capsys) -> None:
    base = ["--checkpoint", str(run_folder), *_flags(test_tokenizer_dir), "--info"]
    rc, out = _info(base, capsys)
    assert rc == 0
    assert Path(_source(out)).name == "checkpoint_base_1_00B_step7629.pt"  # 1.00B > 999.00M
    listing = out[out.index(next(x for x in out if x.startswith("checkpoints (4;"))) :]
    marked = [x for x in listing if x.startswith("  * ")]
    assert len(marked) == 1 and "checkpoint_base_1_00B_step7629.pt" in marked[0]
    assert any("instruct" in x and "pt 1.00B + it 20.0M" in x for x in listing)

    rc, out = _info([*base, "--instruct"], capsys)
    assert Path(_source(out)).name == "checkpoint_instruct_pt1_00B_it20_0M_step8000.pt"
    rc, out = _info([*base, "--nb_tok", "900M"], capsys)
    assert Path(_source(out)).name == "checkpoint_base_999_00M_step100.pt"
    rc, out = _info([*base, "--hf_checkpoint", "checkpoint_12000.pt"], capsys)
    assert rc == 0 and Path(_source(out)).name == "checkpoint_12000.pt"
    assert any(x.startswith("  * checkpoint_12000.pt") for x in out)


def test_best_loss_on_run_folder_is_one_line(run_folder, capsys) -> None:
    rc = main(["--checkpoint", str(run_folder), "--info", "--hf_checkpoint_strategy", "best_loss"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "carry no loss" in err and "\n" not in err


def test_info_on_single_file_has_no_listing(test_tokenizer_dir, capsys) -> None:
    rc, out = _info(
        ["--checkpoint", str(FIXTURE_CKPT), *_flags(test_tokenizer_dir), "--info"], capsys
    )
    assert rc == 0 and not any(x.startswith("checkpoints (") for x in out)


def test_eval_perplexity_text_and_file_agree_with_perplexity(
    test_tokenizer_dir, tmp_path: Path
) -> None:
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    model = ["--checkpoint", str(FIXTURE_CKPT), *_flags(test_tokenizer_dir), "--max_length", "64"]
    results = {}
    for name, action in (
        ("perplexity", ["--perplexity", str(f)]),
        ("file", ["--eval_perplexity", str(f)]),
        ("text", ["--eval_perplexity", TEXT]),
        ("other", ["--eval_perplexity", TEXT[:40]]),
    ):
        out = tmp_path / f"{name}.json"
        assert main([*model, *action, "--no_autocast", "--output", str(out)]) == 0
        results[name] = json.loads(out.read_text(encoding="utf-8"))[0]
    assert results["file"]["loss"] == pytest.approx(results["perplexity"]["loss"], abs=1e-9)
    assert results["text"]["loss"] == pytest.approx(results["perplexity"]["loss"], abs=1e-9)
    assert results["text"]["tokens"] == results["perplexity"]["tokens"]
    assert results["other"]["tokens"] < results["text"]["tokens"]  # the literal text, not a file


def test_eval_perplexity_empty_text_is_one_line(test_tokenizer_dir, capsys) -> None:
    argv = [
        "--checkpoint",
        str(FIXTURE_CKPT),
        *_flags(test_tokenizer_dir),
        "--eval_perplexity",
        " ",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "the text is empty" in err and "\n" not in err


def test_local_g7_hub_layout_passes_preflight_and_opens(tmp_path, test_tokenizer_dir, capsys):
    """A downloaded repo with base/ and instruct/ folders (two levels down)."""
    for folder in (
        "base/checkpoint_tokens_999M_loss_3.5000",
        "base/checkpoint_tokens_2.00B_loss_3.1000",
        "instruct/checkpoint_pt2.00B_it50.0M_loss_2.5000",
    ):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(FIXTURE_CKPT, tmp_path / folder / "pytorch_model.bin")
    base = ["--checkpoint", str(tmp_path), *_flags(test_tokenizer_dir), "--info"]
    rc, out = _info(base, capsys)
    assert rc == 0
    assert _source(out).endswith("base/checkpoint_tokens_2.00B_loss_3.1000")
    assert any(x.startswith("  * base/checkpoint_tokens_2.00B_loss_3.1000") for x in out)
    rc, out = _info([*base, "--instruct"], capsys)
    assert _source(out).endswith("instruct/checkpoint_pt2.00B_it50.0M_loss_2.5000")
    assert any("loss 2.5000" in x and x.startswith("  * ") for x in out)
