"""Command line: every flag of the original inference script, plus the app's own.

One piece at ~440 lines: the parser and the dispatch that reads it stay side by side (the
flags of the trainer's later script are in `trainer_flags`, the one-shot actions in `eval`).

Nothing heavy is imported before the UI starts (torch loads in the app's worker), and any
failure the user can cause ends in one line on stderr, never a traceback (`--debug` shows it).

What can be checked in milliseconds is checked before the screen opens (`preflight`): the
checkpoint path exists, is readable and looks like a checkpoint file (a PyTorch zip or
pickle) or a folder holding one; a ``--tokenizer`` given as a path exists. Failures that
need the weights or the tokenizer read (seconds) are shown in the app.

``--info`` prints its progress lines ("… Finding", "… Reading") only when stderr is a
terminal, so a script sees the card or one error line. (The headless batch runner keeps
its own stderr lines: a log of a long run wants them.)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..base.errors import SwamlaError, one_line
from ..base.memory import reuse_freed_memory
from ..base.params import PARAM_SPECS, SamplingParams
from ..base.safe_text import visible
from ..batch.job import BatchJob
from ..batch.prompts import load_batch_prompts
from ..chat.commands.values import SEED_MAX
from ..chat.conversations import ModelRef
from ..chat.template import with_chat_format
from ..checkpoint import looks_like_checkpoint
from ..checkpoint.selection import parse_nb_tok
from ..engine.options import EngineOptions
from ..headless.distributed import rank_device, torchrun_world
from ..protocols import Loader, Model
from ..ui.options import AppOptions
from .eval import (
    LOGPROBS_MAX,
    check_eval_args,
    run_diagnose,
    run_eval_cmd,
    run_export,
    run_headless_batch,
    run_info,
    run_perplexity_cmd,
    second_loader,
    selection_of,
)
from .resume import ResumeTarget, resolve_resume
from .trainer_flags import add_trainer_flags, add_weight_flags

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"
# model/quant.py's QUANTIZE_CHOICES, spelled out: the parser does not import torch
QUANTIZE_NAMES = ("int8", "int8-split", "int8-weight", "int8-dynamic")


def _seed(text: str) -> int:
    """--seed: an integer in /seed's range (0 to 2**63-1), so the two never disagree and a
    seed the RNG cannot take fails here, before the model loads."""
    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (0 to {SEED_MAX})")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="swamla-tui",
        description="Chat with SWA-MLA checkpoints in the terminal (with no model: the bundled demo).",
    )
    g = p.add_argument_group("model (flags of the original script)")
    g.add_argument(
        "--checkpoint",
        help="checkpoint file or local folder (flat or checkpoint_tokens_* subfolders)",
    )
    g.add_argument(
        "--hf_model",
        "--hf_repo_id",
        dest="hf_model",
        help="Hugging Face Hub repo id, e.g. user/swamla-small (--hf_repo_id: the same)",
    )
    g.add_argument("--mode", choices=("chat", "batch"), default="chat")
    g.add_argument("--prompts_file", help="batch mode: one prompt per line")
    g.add_argument("--max_new_tokens", type=int, default=256)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top_k", type=int, default=50, help="0 disables")
    g.add_argument("--top_p", type=float, default=0.9, help="1.0 disables")
    g.add_argument("--repetition_penalty", type=float, default=1.1, help="1.0 disables")
    g.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (CUDA falls back to CPU)"
    )
    g.add_argument(
        "--dtype",
        default="auto",
        help="auto (bfloat16 on CUDA, float32 on CPU), float32, float16, bfloat16",
    )
    g.add_argument(
        "--quantize",
        choices=QUANTIZE_NAMES,
        default=None,
        help="CPU: int8 weights, per-channel scales. int8: the fastest path this CPU offers "
        "(int8-dynamic on x86, else int8-split, else int8-weight); int8-dynamic: 8-bit "
        "inputs (7 without VNNI), lower quality; int8-split: inputs as two int8 parts per token, closest to "
        "float32; int8-weight: weight-only; see the README",
    )
    g.add_argument(
        "--max_length", type=int, default=2048, help="context kept for generation (<= block_size)"
    )
    g.add_argument("--system_prompt", default=None)
    g.add_argument(
        "--chatml",
        action="store_true",
        help="ChatML turns for instruction-tuned checkpoints (default: detected from the "
        "tokenizer's <|im_start|>/<|im_end|> tokens)",
    )
    add_trainer_flags(g)
    add_weight_flags(g)
    a = p.add_argument_group("swamla-tui")
    a.add_argument(
        "--hf_checkpoint",
        help="subfolder of a Hub repo or local folder, e.g. checkpoint_tokens_2M_loss_2.1234",
    )
    a.add_argument("--tokenizer", help="tokenizer folder or name (default: the checkpoint's own)")
    a.add_argument(
        "--seed", type=_seed, default=None, help=f"make sampling reproducible (0 to {SEED_MAX})"
    )
    a.add_argument(
        "--swa_attention",
        choices=("full", "window"),
        default="full",
        help="full: as trained (default); window: real sliding window with sinks",
    )
    a.add_argument(
        "--compile",
        action="store_true",
        help="CUDA: torch.compile the fused decode step (about 2x faster single-stream; "
        "the first reply waits for compilation)",
    )
    a.add_argument("--theme", default=None, help="UI theme (dark, light); remembered")
    a.add_argument(
        "--output",
        help="write batch results without a screen (.jsonl, .csv, .md; implies --mode batch); "
        "--perplexity: also write the results as JSON (a sweep of a run: .json or .csv, "
        "resumed from OUT.sweep.jsonl)",
    )
    a.add_argument("--batch_size", type=int, default=None, help="batch mode: prompts per batch")
    a.add_argument(
        "--overwrite",
        action="store_true",
        help="batch mode, checkpoint sweep: start over instead of resuming the rows --output "
        "already holds",
    )
    e = p.add_argument_group("evaluate and export")
    e.add_argument(
        "--perplexity",
        metavar="FILE",
        help="print tokens, loss, perplexity and bits per byte of a UTF-8 text file, then exit; "
        "a run folder or repo with several checkpoints: all of them, with a loss curve",
    )
    e.add_argument(
        "--compare",
        metavar="PATH_OR_REPO",
        help="a second checkpoint (file, folder or Hub repo): scored too with --perplexity; "
        "--mode batch: both models answer every prompt (same seed and settings); "
        "chat: /compare regenerates the last reply with it",
    )
    e.add_argument(
        "--compare_dtype",
        default=None,
        help="--perplexity --compare: B's --dtype (default: the same as A's), e.g. model A "
        "in float32 against B in bfloat16",
    )
    e.add_argument(
        "--compare_quantize",
        choices=("none", *QUANTIZE_NAMES),
        default=None,
        help="--perplexity --compare: B's --quantize (default: the same as A's; none: not "
        "quantized)",
    )
    e.add_argument(
        "--logprobs",
        type=int,
        metavar="N",
        default=None,
        help=f"headless --mode batch, JSONL only: each row gets per-token log-probabilities "
        f"and the top N (1..{LOGPROBS_MAX}) alternatives",
    )
    e.add_argument(
        "--expert-stats",
        dest="expert_stats",
        metavar="FILE",
        default=None,
        help="--perplexity, or headless --mode batch with --logprobs N: write the MoE routing "
        "summary of the scored text or the generated tokens as JSON (tokens per expert per "
        "layer, experts never chosen, router entropy, Engram gates)",
    )
    e.add_argument(
        "--stride",
        type=int,
        default=None,
        help="--perplexity: tokens between window starts (default: half of --max_length)",
    )
    e.add_argument(
        "--windows",
        choices=("strided", "rolling"),
        default=None,
        help="--perplexity: strided (default: overlapping windows, --stride apart) or rolling "
        "(lm-evaluation-harness's loglikelihood_rolling plan: disjoint windows, the last one "
        "with as much context as fits)",
    )
    e.add_argument(
        "--eval",
        metavar="TASKS",
        help="run lm-evaluation-harness tasks (comma-separated names, task YAML files or "
        "folders of them) on our engine, then exit; a run folder: each checkpoint; "
        "--output FILE.json or DIR (needs the eval extra: pip install 'swamla-tui[eval]')",
    )
    e.add_argument(
        "--export",
        metavar="OUT_DIR",
        help="write the checkpoint as model.safetensors + config.json + tokenizer, then exit "
        "(float32, or bfloat16 with --dtype bfloat16)",
    )
    a.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="ID",
        help="reopen the last conversation, or the one with this id (Ctrl+O lists them); "
        "without --checkpoint / --hf_model, with the model it was made with",
    )
    a.add_argument("--demo", action="store_true", help="open the bundled demo model")
    a.add_argument("--info", action="store_true", help="print the model card and exit")
    a.add_argument(
        "--debug",
        action="store_true",
        help="token probabilities on from the start (as /probs on), and tracebacks on errors",
    )
    a.add_argument("--version", action="version", version=f"swamla-tui {__version__}")
    return p


def params_from_args(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        temperature=0.0 if getattr(args, "greedy", False) else args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def given_params(argv: Sequence[str] | None) -> frozenset[str]:
    """The sampling flags given on the command line (``--greedy`` gives the temperature):
    the others start from the values the app remembers (``ui.settings``)."""
    parser = build_parser()
    unset = object()
    parser.set_defaults(**dict.fromkeys(PARAM_SPECS, unset))
    ns = parser.parse_args(argv)
    given = {name for name in PARAM_SPECS if getattr(ns, name) is not unset}
    if getattr(ns, "greedy", False):
        given.add("temperature")
    return frozenset(given)


def check_args(args: argparse.Namespace) -> str | None:
    """Validate values the original accepted blindly; returns an error line or None.

    The sampling flags are checked against `PARAM_SPECS`, the same table the sliders and
    slash commands use. ``--max_new_tokens`` has no upper bound here: the model's
    context length, known only after loading, is the bound (the UI clamps to it).
    """
    if args.checkpoint and args.hf_model:
        return "give either --checkpoint or --hf_model, not both"
    for name, spec in PARAM_SPECS.items():
        value = getattr(args, name)
        hi = math.inf if name == "max_new_tokens" else None
        if not spec.accepts(value, hi):
            if hi is not None:
                return f"--{name} must be >= {spec.lo:g}, got {value:g}"
            return f"--{name} must be between {spec.lo:g} and {spec.hi:g}, got {value:g}"
    if args.max_length < 2:
        return f"--max_length must be >= 2, got {args.max_length}"
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch_size must be >= 1, got {args.batch_size}"
    if getattr(args, "nb_tok", None) is not None:
        try:
            parse_nb_tok(args.nb_tok)
        except SwamlaError as e:
            return str(e)
    if getattr(args, "quantize", None) and getattr(args, "export", None):
        return "--quantize applies to chat, batch and --perplexity, not to --export"
    return check_eval_args(args)


def model_source(args: argparse.Namespace) -> tuple[str, str | None]:
    """(source, notice): the checkpoint to open, and a notice when falling back to the demo."""
    if args.checkpoint:
        return args.checkpoint, None
    if args.hf_model:
        return args.hf_model, None
    notice = None
    if not args.demo:
        notice = (
            "No model given: this is the bundled demo model. "
            "Open a real one with --checkpoint PATH or --hf_model USER/REPO."
        )
    return str(DEMO_DIR), notice


_CHECKPOINT_SUFFIXES = (".pt", ".bin", ".pth", ".ckpt")


def _looks_local(text: str) -> bool:
    """A path, not a Hub id: it starts like one, has a file suffix or 2+ slashes."""
    return (
        text.startswith((".", "/", "~", os.sep))
        or text.endswith(_CHECKPOINT_SUFFIXES)
        or text.count("/") >= 2
        or Path(text.split("/")[0]).is_dir()
        or "/" not in text
    )


def _holds_checkpoint(folder: Path) -> bool:
    """A checkpoint file in `folder` or one level down (checkpoint_tokens_* folders), or two
    down under base/ and instruct/ (the G7 Hub layout); or an ``--export`` folder (its
    config.json is read when the model loads)."""
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        return True
    subs = [p for p in folder.iterdir() if p.is_dir()]
    subs += [q for p in subs if p.name in ("base", "instruct") for q in p.iterdir() if q.is_dir()]
    for level in (folder, *subs):
        for p in level.iterdir():
            if p.is_file() and p.name.endswith(_CHECKPOINT_SUFFIXES):
                return True
    return False


def preflight(args: argparse.Namespace) -> str | None:
    """The millisecond checks of the model paths (see the module docstring); an error line."""
    if args.checkpoint and _looks_local(args.checkpoint):
        name = args.checkpoint
        path = Path(name).expanduser()
        try:
            if not path.exists():
                return f"--checkpoint {name}: no such file or folder"
            if path.is_dir():
                if not _holds_checkpoint(path):
                    return (
                        f"--checkpoint {name}: no checkpoint in this folder (looked for "
                        "*.pt, *.bin, *.pth, checkpoint_tokens_*/, base/*/, instruct/*/ and an export's "
                        "model.safetensors)"
                    )
            elif not path.is_file():
                return f"--checkpoint {name}: not a regular file (a FIFO or device is refused)"
            else:
                with open(path, "rb") as fh:
                    head = fh.read(4)
                if not head:
                    return f"--checkpoint {name}: empty file"
                if not looks_like_checkpoint(head):
                    return f"--checkpoint {name}: not a PyTorch checkpoint (neither zip nor pickle)"
        except OSError as exc:
            return f"--checkpoint {name}: cannot read it ({exc.strerror or exc})"
    tok = args.tokenizer
    if tok and (tok.startswith((".", "/", "~", os.sep)) or tok.count("/") >= 2):
        path = Path(tok).expanduser()
        if not path.exists():
            return f"--tokenizer {tok}: no such folder"
        if not path.is_dir():
            return f"--tokenizer {tok}: not a folder (give the folder holding tokenizer.json)"
        if not os.access(path, os.R_OK | os.X_OK):
            return f"--tokenizer {tok}: cannot read it (permission denied)"
    return None


def make_loader(args: argparse.Namespace, source: str, *, quiet: bool = False) -> Loader:
    """The loader the UI or the headless runner calls (torch is imported only then).

    The model comes back with its conversation format (`swamla_tui.chat.template`).
    `quiet` drops the progress lines (stderr is not a terminal). For ``--info`` a missing
    tokenizer is not an error (the card says "not found"): the checkpoint is read once.
    """

    def loader(progress: Callable[[str], None]) -> Model:
        from ..runtime.load import load

        lm: Model = load(
            source,
            device=rank_device(args.device),
            dtype=args.dtype,
            tokenizer=args.tokenizer,
            hf_checkpoint=args.hf_checkpoint,
            swa_attention=args.swa_attention,
            max_length=args.max_length,
            progress=(lambda _text: None) if quiet else progress,
            engine=EngineOptions.from_env(compile=args.compile or None),
            tokenizer_optional=bool(args.info),
            quantize=getattr(args, "quantize", None),
            select=selection_of(args),
            ema=bool(getattr(args, "ema", False)) and not getattr(args, "no_ema", False),
            ignore_unknown=bool(getattr(args, "ignore_unknown_weights", False)),
        )
        return with_chat_format(lm, chatml=args.chatml, system=args.system_prompt)

    return loader


def _err(msg: str) -> None:
    print(f"swamla-tui: error: {visible(msg)}", file=sys.stderr)


def batch_job(args: argparse.Namespace) -> BatchJob:
    """The headless run the flags describe (reads the prompts file)."""
    return BatchJob(
        prompts=load_batch_prompts(args.prompts_file),
        params=params_from_args(args),
        batch_size=args.batch_size,
        output=args.output or None,
        overwrite=args.overwrite,
    )


def app_options(args: argparse.Namespace, notice: str | None) -> AppOptions:
    """The full-screen app's settings from the flags."""
    return AppOptions(
        params=params_from_args(args),
        system_prompt=args.system_prompt,
        theme=args.theme,
        resume=args.resume,
        mode=args.mode,
        prompts_file=args.prompts_file,
        batch_size=args.batch_size,
        notice=notice,
        probs=True if args.debug else None,
    )


def _one_shot(args: argparse.Namespace) -> bool:
    """A run that prints or writes and exits: ``--resume`` does not apply to it."""
    return bool(
        args.info
        or args.diagnose
        or args.perplexity
        or getattr(args, "eval_perplexity", None) is not None
        or args.export
        or args.output
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bad = check_args(args)
    if bad:
        _err(bad)
        return 2
    if args.output and args.mode != "batch":
        args.mode = "batch"  # --output only makes sense for a batch run
    resumed = ResumeTarget(None, None)
    if args.resume is not False and not _one_shot(args):
        try:
            resumed = resolve_resume(args, str(DEMO_DIR))
        except SwamlaError as e:
            _err(f"--resume: {e}")
            return 1
    bad = preflight(args)
    if bad:
        _err(bad)
        return 1
    if EngineOptions.from_env().reuse_memory:
        reuse_freed_memory()  # before any thread starts (see base.memory)
    source, notice = model_source(args)
    try:
        if args.info:
            return run_info(args, source, make_loader)
        if args.diagnose:
            return run_diagnose(args, source, make_loader)
        if args.perplexity or args.eval_perplexity is not None:
            return run_perplexity_cmd(args, source, make_loader)
        if args.export:
            return run_export(args, source, make_loader)
        if args.eval:
            return run_eval_cmd(args, source, make_loader)
        if args.mode == "batch" and torchrun_world() > 1:
            from ..headless.distributed import run_distributed

            return run_distributed(batch_job(args), make_loader(args, source), device=args.device)
        headless = args.mode == "batch" and (args.output or not sys.stdout.isatty())
        if args.logprobs and not headless:
            _err("--logprobs needs --output FILE.jsonl (or stdout not a terminal)")
            return 2
        loader = make_loader(args, source)  # headless: its runner owns its stderr lines
        if headless:
            return run_headless_batch(args, batch_job(args), loader, make_loader)
        from ..ui.app import run_app

        options = app_options(args, notice)
        options.model = ModelRef.of(source, args.hf_checkpoint)
        options.params_given = given_params(argv)
        if resumed.path is not None:
            options.resume = str(resumed.path)
        if resumed.notice:
            options.notice = " ".join(filter(None, (options.notice, resumed.notice)))
        options.compare, options.load_second = args.compare, second_loader(args, make_loader)
        return run_app(loader, options)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns errors into one line
        if args.debug or os.environ.get("SWAMLA_DEBUG"):
            raise
        _err(one_line(e))
        return 1
    except BaseException as e:  # a Rust panic in the tokenizer (pyo3 PanicException)
        if (
            isinstance(e, SystemExit | GeneratorExit)
            or args.debug
            or os.environ.get("SWAMLA_DEBUG")
        ):
            raise
        _err(one_line(e))
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
