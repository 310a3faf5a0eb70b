"""``--resume [ID]`` before the app starts (issue 22 item 5): the conversation an id names,
and the model it goes on with (swamla_tui/cli/resume.py)."""

from __future__ import annotations

import pytest

from swamla_tui.chat.conversations import ModelRef
from swamla_tui.chat.session import ChatSession
from swamla_tui.chat.transcript import TranscriptStore
from swamla_tui.cli.main import DEMO_DIR, build_parser, main
from swamla_tui.cli.resume import resolve_resume

DEMO = str(DEMO_DIR)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("SWAMLA_TUI_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def conversation(data, user: str, model: ModelRef | None):
    session = ChatSession(TranscriptStore(data / "transcripts"))
    if model is not None:
        session.switch_model(model.checkpoint, model.to_json())
    session.finish_turn(user, "ok", stopped=False)
    session.close()
    assert session.transcript is not None
    return session.transcript.path


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_flag_forms():
    assert parse().resume is False
    assert parse("--resume").resume is True
    assert parse("--resume", "20261202").resume == "20261202"
    assert parse("--resume", "--checkpoint", "x.pt").resume is True


def test_reopens_the_recorded_checkpoint(data, tmp_path):
    ckpt = tmp_path / "run" / "ckpt.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"PK")
    path = conversation(data, "hi", ModelRef(str(ckpt), None, "ckpt.pt"))
    args = parse("--resume", path.stem)
    target = resolve_resume(args, DEMO)
    assert (target.path, target.notice) == (path, None)
    assert args.checkpoint == str(ckpt) and args.hf_model is None


def test_reopens_a_hub_repo_with_its_subfolder(data):
    path = conversation(data, "hi", ModelRef("user/repo", "checkpoint_tokens_2M", "x"))
    args = parse("--resume")
    assert resolve_resume(args, DEMO).path == path
    assert (args.hf_model, args.hf_checkpoint, args.checkpoint) == (
        "user/repo",
        "checkpoint_tokens_2M",
        None,
    )


def test_a_given_model_wins_with_one_notice(data):
    conversation(data, "hi", ModelRef("/runs/a.pt"))
    args = parse("--resume", "--checkpoint", "/runs/b.pt")
    target = resolve_resume(args, DEMO)
    assert target.notice == (
        "This conversation was made with /runs/a.pt; it goes on with /runs/b.pt."
    )
    assert args.checkpoint == "/runs/b.pt"
    same = resolve_resume(parse("--resume", "--checkpoint", "/runs/a.pt"), DEMO)
    assert same.notice is None


def test_a_model_that_is_gone_falls_back_to_the_demo_with_a_notice(data):
    conversation(data, "hi", ModelRef("/nowhere/gone.pt"))
    args = parse("--resume")
    target = resolve_resume(args, DEMO)
    assert target.notice is not None and "which is not found" in target.notice
    assert args.checkpoint is None and args.hf_model is None


def test_the_demo_reopens_without_the_demo_notice(data):
    conversation(data, "hi", ModelRef(DEMO))
    args = parse("--resume")
    assert resolve_resume(args, DEMO).notice is None and args.demo


def test_nothing_to_resume(data):
    target = resolve_resume(parse("--resume"), DEMO)
    assert (target.path, target.notice) == (None, None)


def test_unknown_id_is_one_line_and_exit_1(data, capsys):
    conversation(data, "hi", None)
    assert main(["--resume", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("swamla-tui: error: --resume: no conversation 'nosuch'")
    assert err.count("\n") == 1


def test_a_relative_path_is_recorded_absolute_and_matches(data, tmp_path, monkeypatch):
    (tmp_path / "ckpt.pt").write_bytes(b"PK")
    monkeypatch.chdir(tmp_path)
    ref = ModelRef.of("ckpt.pt")
    assert ref.source == str(tmp_path / "ckpt.pt")
    assert ModelRef.of("user/repo", "sub") == ModelRef("user/repo", "sub")
    conversation(data, "hi", ref)
    assert resolve_resume(parse("--resume", "--checkpoint", "ckpt.pt"), DEMO).notice is None


def test_main_hands_the_app_the_conversation_model_and_given_flags(data, tmp_path, monkeypatch):
    from swamla_tui.ui import app as app_module

    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"PK\x03\x04")
    path = conversation(data, "hi", ModelRef.of(str(ckpt)))
    seen = []

    def run_app(loader, options):
        seen.append(options)
        return 0

    monkeypatch.setattr(app_module, "run_app", run_app)
    assert main(["--resume", path.stem, "--top_k", "5"]) == 0
    [options] = seen
    assert options.resume == str(path)
    assert options.model == ModelRef(str(ckpt))  # reopened: no --checkpoint given
    assert options.params_given == {"top_k"} and options.params.top_k == 5
    assert options.notice is None
