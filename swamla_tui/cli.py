"""Command line: every flag of the original inference script, plus the app's own.

Nothing heavy is imported before the UI starts (torch loads in the app's worker), and any
failure the user can cause ends in one line on stderr, never a traceback (`--debug` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .params import SamplingParams

DEMO_DIR = Path(__file__).resolve().parent / "demo"


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
    g.add_argument("--hf_model", help="Hugging Face Hub repo id, e.g. user/swamla-small")
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
        "--max_length", type=int, default=2048, help="context kept for generation (<= block_size)"
    )
    g.add_argument("--system_prompt", default=None)
    a = p.add_argument_group("swamla-tui")
    a.add_argument(
        "--hf_checkpoint",
        help="subfolder of a Hub repo or local folder, e.g. checkpoint_tokens_2M_loss_2.1234",
    )
    a.add_argument("--tokenizer", help="tokenizer folder or name (default: the checkpoint's own)")
    a.add_argument("--seed", type=int, default=None, help="make sampling reproducible")
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
        "--output", help="batch mode: write results without a screen (.jsonl, .csv, .md)"
    )
    a.add_argument("--batch_size", type=int, default=None, help="batch mode: prompts per batch")
    a.add_argument("--resume", action="store_true", help="reopen the last conversation")
    a.add_argument("--demo", action="store_true", help="open the bundled demo model")
    a.add_argument("--info", action="store_true", help="print the model card and exit")
    a.add_argument("--debug", action="store_true", help="show tracebacks")
    a.add_argument("--version", action="version", version=f"swamla-tui {__version__}")
    return p


def params_from_args(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def check_args(args: argparse.Namespace) -> str | None:
    """Validate values the original accepted blindly; returns an error line or None."""
    from .params import RANGES

    if args.checkpoint and args.hf_model:
        return "give either --checkpoint or --hf_model, not both"
    checks = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "repetition_penalty": args.repetition_penalty,
    }
    for name, v in checks.items():
        lo, hi = RANGES[name]
        if not (lo <= v <= (hi if name != "repetition_penalty" else 10.0)):
            return f"--{name} must be between {lo:g} and {hi:g}, got {v:g}"
    if args.top_k < 0:
        return f"--top_k must be >= 0, got {args.top_k}"
    if args.max_new_tokens < 1:
        return f"--max_new_tokens must be >= 1, got {args.max_new_tokens}"
    if args.max_length < 2:
        return f"--max_length must be >= 2, got {args.max_length}"
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch_size must be >= 1, got {args.batch_size}"
    return None


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


def make_loader(args: argparse.Namespace, source: str) -> Callable[[Callable[[str], None]], Any]:
    def loader(progress: Callable[[str], None]) -> Any:
        from .loaded import load

        return load(
            source,
            device=args.device,
            dtype=args.dtype,
            tokenizer=args.tokenizer,
            hf_checkpoint=args.hf_checkpoint,
            swa_attention=args.swa_attention,
            max_length=args.max_length,
            progress=progress,
        )

    return loader


def _err(msg: str) -> None:
    print(f"swamla-tui: error: {msg}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bad = check_args(args)
    if bad:
        _err(bad)
        return 2
    if args.compile:
        os.environ["SWAMLA_COMPILE"] = "1"
    source, notice = model_source(args)
    loader = make_loader(args, source)
    try:
        if args.info:
            return _info(loader, args)
        headless = args.mode == "batch" and (args.output or not sys.stdout.isatty())
        if headless:
            from .headless import run_headless

            return run_headless(args, loader)
        from .ui.app import run_app

        return run_app(
            loader,
            params=params_from_args(args),
            system_prompt=args.system_prompt,
            theme=args.theme,
            resume=args.resume,
            mode=args.mode,
            prompts_file=args.prompts_file,
            notice=notice,
        )
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns errors into one line
        if args.debug or os.environ.get("SWAMLA_DEBUG"):
            raise
        from .errors import SwamlaError

        msg = str(e) if isinstance(e, SwamlaError) else f"{type(e).__name__}: {e}"
        _err((msg.splitlines() or [type(e).__name__])[0])
        return 1


def _info(loader: Callable[[Callable[[str], None]], Any], args: argparse.Namespace) -> int:
    from .errors import TokenizerError

    say = lambda s: print(f"… {s}", file=sys.stderr)  # noqa: E731
    try:
        lm = loader(say)
    except TokenizerError as e:  # the card does not need a tokenizer
        print(f"note: {e}", file=sys.stderr)
        args.tokenizer = False
        lm = make_loader(args, model_source(args)[0])(say)
    for n in lm.notices:
        print(f"note: {n}", file=sys.stderr)
    card = lm.card()
    width = max(len(k) for k in card)
    for k, v in card.items():
        print(f"{k.rjust(width)}  {v}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
