"""What the CLI settles before any screen opens (issue 12 §2, issue 9 §4 flags).

`run_app` is replaced by a function that fails the test: every case here must end (or run
headless) without the full-screen app.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from swamla_tui.cli import main as cli
from swamla_tui.cli.main import build_parser, main
from swamla_tui.demo import DEMO_DIR
from tests.support.helpers import FIXTURE_CKPT


@pytest.fixture(autouse=True)
def no_app(monkeypatch):
    def opened(*args, **kwargs):
        raise AssertionError("the full-screen app was opened")

    monkeypatch.setattr("swamla_tui.ui.app.run_app", opened)


def one_error_line(capsys) -> str:
    err: str = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("swamla-tui: error: ")
    return lines[0].removeprefix("swamla-tui: error: ")


def test_missing_checkpoint_fails_before_the_screen(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.pt")]) == 1
    assert one_error_line(capsys).endswith("missing.pt: no such file or folder")
    assert main(["--checkpoint", "missing.pt"]) == 1
    assert "no such file" in one_error_line(capsys)


def test_text_file_and_empty_folder_are_not_checkpoints(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n", encoding="utf-8")
    assert main(["--checkpoint", str(text)]) == 1
    assert "not a PyTorch checkpoint" in one_error_line(capsys)
    empty = tmp_path / "run"
    empty.mkdir()
    assert main(["--checkpoint", str(empty)]) == 1
    assert "no checkpoint in this folder" in one_error_line(capsys)
    (tmp_path / "zero.pt").write_bytes(b"")
    assert main(["--checkpoint", str(tmp_path / "zero.pt")]) == 1
    assert "empty file" in one_error_line(capsys)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions")
def test_unreadable_checkpoint(tmp_path, capsys):
    locked = tmp_path / "locked.pt"
    locked.write_bytes(b"PK\x03\x04")
    locked.chmod(0)
    try:
        assert main(["--checkpoint", str(locked)]) == 1
        assert "cannot read it" in one_error_line(capsys)
    finally:
        locked.chmod(0o600)


def test_missing_tokenizer_path_says_so(tmp_path, capsys):
    assert main(["--demo", "--tokenizer", "./nope"]) == 1
    assert one_error_line(capsys) == "--tokenizer ./nope: no such folder"
    assert main(["--demo", "--tokenizer", str(tmp_path / "tok" / "x")]) == 1
    assert "no such folder" in one_error_line(capsys)


def test_a_checkpoint_folder_passes_the_quick_checks(tmp_path):
    sub = tmp_path / "run" / "checkpoint_tokens_2M_loss_2.1234"
    sub.mkdir(parents=True)
    (sub / "pytorch_model.bin").write_bytes(b"PK\x03\x04")
    ns = build_parser().parse_args(["--checkpoint", str(tmp_path / "run")])
    assert cli.preflight(ns) is None
    ns = build_parser().parse_args(["--checkpoint", str(DEMO_DIR)])
    assert cli.preflight(ns) is None
    ns = build_parser().parse_args(["--checkpoint", "user/repo"])  # the Hub: checked later
    assert cli.preflight(ns) is None


def test_info_without_a_tokenizer_reads_the_checkpoint_once(capsys, monkeypatch):
    """Exit 0 and "tokenizer  not found"; no progress chatter when stderr is not a
    terminal (capsys is not), and the checkpoint is read once."""
    import swamla_tui.runtime.load as loaded
    from swamla_tui.checkpoint.reader import read_checkpoint_mapped as real

    reads: list[str] = []

    def counted(p):
        reads.append(str(p))
        return real(p)

    monkeypatch.setattr(loaded, "read_checkpoint_mapped", counted)
    assert main(["--info", "--checkpoint", str(FIXTURE_CKPT), "--tokenizer", "no-such-tok"]) == 0
    out, err = capsys.readouterr()
    assert len(reads) == 1
    card = dict(line.strip().split("  ", 1) for line in out.strip().splitlines())
    assert card["tokenizer"].strip() == "not found"
    assert card["chat format"].strip() == "You:/Assistant: lines"
    assert "…" not in err  # no "… Finding", "… Reading"
    assert err.startswith("note: ") and "no-such-tok" in err


def test_info_on_a_foreign_checkpoint_prints_one_line(tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, foreign)
    assert main(["--info", "--checkpoint", str(foreign)]) == 1
    one_error_line(capsys)


def test_info_shows_chatml_and_the_repo_id_alias_parses(capsys):
    assert main(["--info", "--demo", "--chatml"]) == 0
    out = capsys.readouterr().out
    assert "chat format  ChatML (--chatml)" in out
    assert "tokenizer" in out and "source" in out
    ns = build_parser().parse_args(["--hf_repo_id", "user/swamla"])
    assert ns.hf_model == "user/swamla"
    assert main(["--hf_repo_id", "a/b", "--checkpoint", "x.pt"]) == 2
    assert "either --checkpoint or --hf_model" in capsys.readouterr().err


def test_output_implies_batch_mode(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is a list?\n", encoding="utf-8")
    out = tmp_path / "r.jsonl"
    code = main(
        ["--demo", "--prompts_file", str(prompts), "--output", str(out),
         "--max_new_tokens", "4", "--temperature", "0"]
    )  # fmt: skip
    assert code == 0
    (record,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert record["prompt"] == "What is a list?"


def test_an_export_folder_opens_with_checkpoint(tmp_path, test_tokenizer_dir, capsys):
    """``--checkpoint EXPORT_DIR`` passes the quick checks and ``--info`` reads the export
    (the quick check once refused every export folder)."""
    out = tmp_path / "exp"
    argv = ["--checkpoint", str(FIXTURE_CKPT), "--tokenizer", str(test_tokenizer_dir)]
    assert main([*argv, "--export", str(out)]) == 0
    capsys.readouterr()
    assert cli.preflight(build_parser().parse_args(["--checkpoint", str(out)])) is None
    assert main(["--checkpoint", str(out), "--info"]) == 0
    card, err = capsys.readouterr()
    assert "427,968" in card.replace(" ", "") or "427968" in card.replace(",", "")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--checkpoint", str(empty)]) == 1
    assert "export's model.safetensors" in one_error_line(capsys)
