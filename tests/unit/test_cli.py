"""The CLI's own checks and what it builds: one range table, the batch job, the app options."""

from __future__ import annotations

import pytest

from swamla_tui.base.params import PARAM_SPECS
from swamla_tui.batch.prompts import DEFAULT_PROMPTS
from swamla_tui.chat.commands.parse import CommandError, parse_command
from swamla_tui.cli.main import app_options, batch_job, build_parser, check_args, main


def args(*argv: str):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("name", ["temperature", "top_k", "top_p", "repetition_penalty"])
def test_flag_ranges_are_the_slider_and_command_ranges(name):
    spec = PARAM_SPECS[name]
    fmt = (lambda v: str(int(v))) if spec.integer else (lambda v: f"{v:g}")
    assert check_args(args(f"--{name}", fmt(spec.hi))) is None
    assert check_args(args(f"--{name}", fmt(spec.lo))) is None
    too_big = fmt(spec.hi + 1)
    error = check_args(args(f"--{name}", too_big))
    assert error == f"--{name} must be between {spec.lo:g} and {spec.hi:g}, got {too_big}"
    with pytest.raises(CommandError):
        parse_command(f"/{name} {too_big}")


def test_repetition_penalty_3_is_refused_everywhere(capsys):
    assert main(["--repetition_penalty", "3"]) == 2
    assert capsys.readouterr().err.strip() == (
        "swamla-tui: error: --repetition_penalty must be between 1 and 2, got 3"
    )


def test_max_new_tokens_has_only_a_lower_bound_here():
    assert check_args(args("--max_new_tokens", "100000")) is None
    assert check_args(args("--max_new_tokens", "0")) == "--max_new_tokens must be >= 1, got 0"


def test_batch_job_and_app_options_from_flags(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\n\n two \n", encoding="utf-8")
    ns = args(
        "--prompts_file",
        str(prompts),
        "--batch_size",
        "3",
        "--output",
        "o.csv",
        "--temperature",
        "0.5",
        "--seed",
        "7",
    )
    job = batch_job(ns)
    assert (job.prompts, job.batch_size, job.output) == (["one", "two"], 3, "o.csv")
    assert (job.params.temperature, job.params.seed) == (0.5, 7)
    assert batch_job(args()).prompts == list(DEFAULT_PROMPTS)
    options = app_options(args("--mode", "batch", "--resume", "--theme", "light"), "hi")
    assert (options.mode, options.resume, options.theme, options.notice) == (
        "batch",
        True,
        "light",
        "hi",
    )
    assert options.params is not app_options(args(), None).params


@pytest.mark.parametrize("seed", ["1e27", "-1", str(2**63), "99999999999999999999999999", "x"])
def test_seed_outside_what_seed_accepts_is_refused_by_the_parser(seed, capsys):
    """The CLI and /seed share one rule: an integer from 0 to 2**63-1 (-1 is refused by
    both); a seed the RNG cannot take fails here, not after the model loaded."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--seed", seed])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("swamla-tui: error: argument --seed:") and seed in err
    with pytest.raises(CommandError):
        parse_command(f"/seed {seed}")


def test_seed_bounds_accepted_by_both():
    for seed in (0, 2**63 - 1):
        assert build_parser().parse_args(["--seed", str(seed)]).seed == seed
        assert parse_command(f"/seed {seed}").value == seed


def test_hf_model_naming_a_system_file_is_one_clean_line(capsys):
    assert main(["--hf_model", "/etc/passwd", "--info"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("swamla-tui: error: /etc/passwd:"), err
    assert "IndexError" not in err and "Traceback" not in err


def test_expert_stats_needs_a_perplexity_run(capsys):
    assert main(["--checkpoint", "x.pt", "--expert-stats", "s.json", "--info"]) == 2
    assert "--expert-stats applies only to --perplexity" in capsys.readouterr().err


def test_expert_stats_of_eval_perplexity_text(tmp_path, capsys):
    from tests.support.helpers import V2_CKPT, V2_TOKENIZER

    out = tmp_path / "s.json"
    argv = ["--checkpoint", str(V2_CKPT), "--tokenizer", str(V2_TOKENIZER)]
    argv += ["--eval_perplexity", "Once upon a time there was a model.", "--expert-stats", str(out)]
    assert main(argv) == 0
    import json

    data = json.loads(out.read_text())
    assert [d["layer"] for d in data["layers"]] == [2, 5] and data["tokens"] > 0
    assert "never chosen" in capsys.readouterr().err


def test_expert_stats_of_a_batch_needs_logprobs(capsys):
    argv = ["--checkpoint", "x.pt", "--mode", "batch", "--output", "o.jsonl"]
    assert main([*argv, "--expert-stats", "s.json"]) == 2
    assert "headless batch run with --logprobs N" in capsys.readouterr().err
