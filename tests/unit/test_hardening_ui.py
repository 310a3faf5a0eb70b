"""Issue 11, the CLI / session items: escapes (5), Rust panics (10), two writers of one
transcript (11), command values and damaged transcripts (12), /save onto a file (15).

Every hostile input is built here; each outcome is one line or a skipped line, never a
traceback, and nothing the user had is lost.
"""

from __future__ import annotations

import io
import json
import random
import textwrap
from pathlib import Path

import pytest

from swamla_tui.base.errors import SwamlaError
from swamla_tui.base.params import SamplingParams
from swamla_tui.base.safe_text import json_line_safe, visible
from swamla_tui.batch.job import BatchJob
from swamla_tui.chat.commands.parse import COMMANDS, SEED_MAX, CommandError, parse_command
from swamla_tui.chat.conversation import Conversation, Turn, save_conversation
from swamla_tui.chat.session import ChatSession
from swamla_tui.chat.transcript import Transcript, TranscriptBusy, TranscriptStore
from swamla_tui.cli import main as cli
from swamla_tui.headless.run import run_headless
from tests.support.helpers import FIXTURE_CKPT, process_running
from tests.support.hostile_ui import (
    C1_CSI,
    HOSTILE,
    OSC52,
    TITLE,
    HostileBatchLM,
    PanicException,
    deep_json_line,
    raw_controls,
)

# ------------------------------------------------------------------ 5: the sanitiser


def test_visible_replaces_every_control_but_newline_and_tab():
    every = "".join(chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)])
    shown = visible(every)
    assert raw_controls(shown) == []
    assert "\n" in shown and "\t" in shown
    assert "␛" in shown and "\\x9b" in shown and "␀" in shown and "␡" in shown
    assert visible("a\r\nb") == "a\nb"  # Windows line ends are not shown as ␍
    assert visible("over\rwrite") == "over␍write"
    plain = "héllo 日本 🙂\n\tend [b]markup[/b] \u2028"
    assert visible(plain) is plain  # nothing to replace: the same object


def test_json_line_safe_keeps_the_value():
    record = {"completion": HOSTILE + "\x7f\x85", "prompt": f"p{C1_CSI}"}
    line = json_line_safe(json.dumps(record, ensure_ascii=False))
    assert raw_controls(line) == []
    assert json.loads(line) == record  # a reader gets the raw text back


# --------------------------------------------------------------------- 5 and 10: CLI


def _hostile_checkpoint(tmp_path: Path) -> Path:
    """The reference checkpoint with a state-dict key carrying OSC 52 and a C1 CSI, in a
    folder whose name sets the window title."""
    import torch

    from swamla_tui.checkpoint.reader import read_checkpoint

    ckpt = read_checkpoint(FIXTURE_CKPT)
    del ckpt["optimizer"]  # its stand-in classes do not pickle again
    ckpt["model"][f"{OSC52}evil{C1_CSI}.weight"] = torch.zeros(2)
    folder = tmp_path / f"ckpt{TITLE}"
    folder.mkdir()
    path = folder / "tiny.pt"
    torch.save(ckpt, path)
    return path


def test_info_prints_checkpoint_strings_visibly(tmp_path, capsys):
    path = _hostile_checkpoint(tmp_path)
    argv = ["--info", "--checkpoint", str(path), "--tokenizer", str(tmp_path)]
    assert cli.main([*argv, "--ignore-unknown-weights"]) == 0  # unknown tensors: refused otherwise
    out, err = capsys.readouterr()
    assert raw_controls(out) == [] and raw_controls(err) == []
    assert "ckpt␛]0;pwned␇" in out  # the source line, shown, not obeyed
    assert "␛]52;c;SGVsbG8=␇evil\\x9b31m.weight" in err  # the unknown-tensor note


def test_error_line_is_visible(tmp_path, capsys):
    missing = tmp_path / f"no{OSC52}such.pt"
    assert cli.main(["--checkpoint", str(missing), "--info"]) == 1
    err = capsys.readouterr().err
    assert raw_controls(err) == []
    last = err.splitlines()[-1]
    assert last.startswith("swamla-tui: error: ") and "no␛]52;c;SGVsbG8=␇such.pt" in last


def _panicking_loader(*args, **kwargs):
    def loader(progress):
        raise PanicException("regex panicked: called `Result::unwrap()` on an `Err` value")

    return loader


@pytest.mark.parametrize("argv", [["--info"], ["--mode", "batch", "--output", "out.jsonl"]])
def test_rust_panic_is_one_line_exit_1(argv, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "make_loader", _panicking_loader)
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert err == (
        "swamla-tui: error: PanicException: regex panicked: called `Result::unwrap()` "
        "on an `Err` value\n"
    )
    assert "Traceback" not in out + err


def test_rust_panic_in_a_batch_is_one_line(monkeypatch, capsys, tmp_path):
    lm = HostileBatchLM(error_after=1, error=PanicException("tokenizer panicked"))
    monkeypatch.setattr(cli, "make_loader", lambda *a, **k: lambda progress: lm)
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\n", encoding="utf-8")
    argv = ["--mode", "batch", "--prompts_file", str(prompts), "--output", str(tmp_path / "o.md")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "swamla-tui: error: PanicException: tokenizer panicked"


def test_keyboard_interrupt_and_exit_are_not_swallowed(monkeypatch):
    def exiting(*a, **k):
        def loader(progress):
            raise SystemExit(3)

        return loader

    monkeypatch.setattr(cli, "make_loader", exiting)
    with pytest.raises(SystemExit):
        cli.main(["--info"])


def test_headless_output_is_visible_and_jsonl_raw():
    lm = HostileBatchLM()
    out, err = io.StringIO(), io.StringIO()
    job = BatchJob(prompts=[f"p{OSC52}", "q"], params=SamplingParams(), batch_size=2)

    def loader(progress):
        progress(f"reading {TITLE}")
        return lm

    assert run_headless(job, loader, err=err, out=out) == 0
    assert raw_controls(out.getvalue()) == [] and raw_controls(err.getvalue()) == []
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["completion"] for r in records] == [HOSTILE, HOSTILE]  # raw in the data
    assert records[0]["prompt"] == f"p{OSC52}"
    assert "reading ␛]0;pwned␇" in err.getvalue()


# ------------------------------------------------------------- 12: command values


@pytest.mark.parametrize("name", ["seed", "max", "topk", "top_k", "top-k", "maxtokens"])
@pytest.mark.parametrize("digits", [4_301, 50_000])
def test_huge_integers_are_command_errors(name, digits):
    for value in ("9" * digits, "-" + "9" * digits, "+" + "1" * digits):
        with pytest.raises(CommandError) as ei:
            parse_command(f"/{name} {value}")
        msg = str(ei.value)
        assert "\n" not in msg and len(msg) < 200 and "expects a whole number" in msg


def test_fuzzed_command_lines_only_raise_command_error():
    """2,000 seeded random lines (100,000 were run once: all CommandError or a command)."""
    rng = random.Random(11)
    names = [s.name for s in COMMANDS] + [a for s in COMMANDS for a in s.aliases]
    pieces = [*"0123456789+-.eE !/[]\\'\" \t", "\x1b", "\x9b", "\x00", "日", "inf", "off"]
    for _ in range(2_000):
        if rng.random() < 0.3:
            value = rng.choice("+- ").strip() + rng.choice("09") * rng.choice([4_300, 4_301, 9_000])
        else:
            value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        line = f"/{rng.choice(names)}{'!' if rng.random() < 0.1 else ''} {value}"
        try:
            parse_command(line, max_new_tokens_limit=rng.choice([1, 2048, 10**6]))
        except CommandError as exc:
            assert "\n" not in str(exc)


def test_leading_zeros_still_parse():
    assert parse_command("/topk " + "0" * 6000 + "7").value == 7
    assert parse_command("/seed -0").value == 0
    assert parse_command(f"/seed {SEED_MAX}").value == SEED_MAX
    with pytest.raises(CommandError):
        parse_command(f"/seed {SEED_MAX + 1}")
    with pytest.raises(CommandError):
        parse_command("/temp " + "9" * 5000)  # a float: inf is refused, no ValueError


# ------------------------------------------------------------------ 15: /save!


def test_save_bang_parses_and_other_bangs_are_refused():
    cmd = parse_command("/save! notes.md")
    assert cmd.name == "save" and cmd.force and cmd.value == "notes.md"
    assert not parse_command("/save notes.md").force
    assert parse_command("/SAVE! 'my notes.md'").value == "my notes.md"
    for line in ("/temp! 1", "/undo!", "/batch! x.txt"):
        with pytest.raises(CommandError, match="takes no '!'"):
            parse_command(line)
    with pytest.raises(CommandError, match="Unknown command"):
        parse_command("/save!! x.md")


def test_save_refuses_an_existing_file(tmp_path):
    conv = Conversation()
    conv.add_turn("hello", " hi", False)
    target = tmp_path / "keep.md"
    target.write_text("precious", encoding="utf-8")
    with pytest.raises(SwamlaError) as ei:
        save_conversation(conv, target)
    assert "already exists" in str(ei.value) and "/save!" in str(ei.value)
    assert target.read_text(encoding="utf-8") == "precious"
    assert save_conversation(conv, target, overwrite=True) == target
    assert "hello" in target.read_text(encoding="utf-8")
    folder = tmp_path / "dir.md"
    folder.mkdir()  # a folder is not replaced: the file goes inside it
    inside = save_conversation(conv, folder)
    assert inside.parent == folder and folder.is_dir()


# ----------------------------------------------------- 11: one writer per transcript


def test_second_writer_of_a_transcript_is_refused(tmp_path):
    store = TranscriptStore(tmp_path)
    first = store.new()
    first.append_turn(Turn("a", "b"))
    with pytest.raises(TranscriptBusy):
        store.reopen(first.path)
    first.close()
    again = store.reopen(first.path)  # released: the next instance gets it
    again.append_turn(Turn("c", "d"))
    assert [t.user for t in store.load(first.path).turns] == ["a", "c"]


def test_two_sessions_resuming_one_transcript_do_not_interleave(tmp_path):
    folder = tmp_path / "t"
    one = ChatSession(TranscriptStore(folder))
    one.finish_turn("first", " 1", stopped=False)
    one.finish_turn("second", " 2", stopped=False)
    [original] = list(folder.glob("*.jsonl"))

    two = ChatSession(TranscriptStore(folder))
    resumed = two.resume_latest()
    assert resumed is not None and resumed.busy and resumed.path == original
    assert two.transcript is not None and two.transcript.path != original
    assert [t.user for t in two.conversation.turns] == ["first", "second"]
    two.undo()  # the other instance's /undo ...
    two.finish_turn("two's own", " x", stopped=False)
    one.finish_turn("third", " 3", stopped=False)

    # ... never reaches the first instance's file, and each file replays whole
    assert [t.user for t in TranscriptStore.load(original).turns] == ["first", "second", "third"]
    copy = TranscriptStore.load(two.transcript.path)
    assert [t.user for t in copy.turns] == ["first", "two's own"]
    header = json.loads(two.transcript.path.read_text(encoding="utf-8").splitlines()[0])
    assert header["meta"]["resumed_from"] == original.name


def test_a_transcript_locked_by_another_process(tmp_path):
    store = TranscriptStore(tmp_path)
    t = store.new()
    t.append_turn(Turn("mine", "ok"))
    t.close()
    holder = textwrap.dedent(
        f"""
        import sys
        from swamla_tui.chat.transcript import TranscriptStore
        t = TranscriptStore({str(tmp_path)!r}).reopen({str(t.path)!r})
        print("locked", flush=True)
        sys.stdin.readline()
        """
    )
    with process_running(holder, "locked"):
        session = ChatSession(store)
        resumed = session.resume_latest()
        assert resumed is not None and resumed.busy
        session.finish_turn("elsewhere", "x", stopped=False)
    assert [x.user for x in store.load(t.path).turns] == ["mine"]
    # the holder has exited: the kernel dropped its lock, no stale lock file remains
    store.reopen(t.path).close()


# -------------------------------------------------------- 12: damaged transcripts


def test_replay_skips_deep_and_malformed_lines(tmp_path):
    store = TranscriptStore(tmp_path)
    t = store.new(system="S")
    t.append_turn(Turn("kept", "yes"))
    t.close()
    bad_lines = [
        deep_json_line(100_000),  # RecursionError in the C parser
        '{"type": "turn", "user": ' + deep_json_line(200) + ', "assistant": "x"}',
        '{"type": "turn", "user": "u", "assistant": 5}',
        '{"type": "system", "system": {"nested": true}}',
        '"just a string"',
        '{"type": "turn", "user": "u", "assistant": "a", "stopped": "false"}',
        '{"type": "no-such-event"}',
        "{not json",
    ]
    with open(t.path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(bad_lines) + "\n")
        fh.write(json.dumps({"type": "turn", "user": "after", "assistant": "ok"}) + "\n")
    replay = store.replay(t.path)
    assert replay.skipped == len(bad_lines)
    assert replay.conversation.system == "S"
    assert [x.user for x in replay.conversation.turns] == ["kept", "after"]


def test_resume_reports_skipped_lines_and_goes_on(tmp_path):
    store = TranscriptStore(tmp_path)
    t = store.new()
    t.append_turn(Turn("kept", "yes"))
    t.close()
    with open(t.path, "a", encoding="utf-8") as fh:
        fh.write(deep_json_line() + "\n")
    session = ChatSession(store)
    resumed = session.resume_latest()
    assert resumed is not None and resumed.skipped == 1 and not resumed.busy
    session.finish_turn("next", "fine", stopped=False)
    assert [x.user for x in store.load(t.path).turns] == ["kept", "next"]


def test_transcript_keeps_raw_text(tmp_path):
    t = Transcript(tmp_path / "t.jsonl")
    t.append_turn(Turn(HOSTILE, HOSTILE))
    t.close()
    assert TranscriptStore.load(t.path).turns == [Turn(HOSTILE, HOSTILE)]
