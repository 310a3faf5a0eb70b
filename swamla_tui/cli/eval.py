"""The CLI's one-shot actions besides chat: ``--info``, ``--perplexity``, ``--export``, and the
headless batch runs with ``--compare`` or ``--logprobs``; and the checks of their flags.

Split from `swamla_tui.cli.main` (which keeps the argument parser, the path preflight and
`make_loader`) so that each stays short. Every handler takes the loader factory as an
argument (`MakeLoader`, `cli.make_loader` in practice) instead of importing the CLI: this
module sits one layer below it. Handlers return the exit status; errors propagate to
`cli.main`, which turns them into one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Protocol

from ..base.safe_text import visible
from ..batch.job import BatchJob
from ..protocols import Loader, Model

__all__ = [
    "LOGPROBS_MAX",
    "MakeLoader",
    "check_eval_args",
    "fits",
    "run_export",
    "run_headless_batch",
    "run_info",
    "run_perplexity_cmd",
    "second_loader",
    "stderr_is_terminal",
]

LOGPROBS_MAX = 20
"""Largest ``--logprobs N`` (alternatives per token; the JSONL grows with it)."""


class MakeLoader(Protocol):
    """`cli.make_loader`: the loader of checkpoint `source` as the flags describe it."""

    def __call__(self, args: argparse.Namespace, source: str, *, quiet: bool = False) -> Loader: ...


def check_eval_args(args: argparse.Namespace) -> str | None:
    """The evaluate/export flags: one action at a time, and flags only where they apply."""
    if args.perplexity and args.export:
        return "give either --perplexity or --export, not both"
    if args.stride is not None:
        if not args.perplexity:
            return "--stride applies only to --perplexity"
        if args.stride < 1:
            return f"--stride must be >= 1, got {args.stride}"
    if args.compare and (args.export or args.info):
        return f"--compare does not apply to {'--export' if args.export else '--info'}"
    n = getattr(args, "logprobs", None)
    if n is not None:
        if not 1 <= n <= LOGPROBS_MAX:
            return f"--logprobs must be between 1 and {LOGPROBS_MAX}, got {n}"
        if args.compare:
            return "--logprobs does not apply to --compare"
        if args.output and not str(args.output).lower().endswith(".jsonl"):
            return "--logprobs writes JSONL only: give --output FILE.jsonl (CSV and Markdown have no column for it)"
        if (
            args.perplexity
            or args.export
            or args.info
            or (not args.output and args.mode != "batch")
        ):
            return (
                "--logprobs applies only to --mode batch (--output FILE.jsonl, or JSONL on stdout)"
            )
    return None


def fits(first: Model, source: str) -> None:
    """A/B: refuse, before loading `source`, when it would not fit next to `first`."""
    from ..runtime.memcheck import check_second_fits

    check_second_fits(first, source)


def second_loader(
    args: argparse.Namespace, make_loader: MakeLoader
) -> Callable[[Model, str, Callable[[str], None]], Model]:
    """The app's loader of model B (``--compare``, ``/compare PATH``): the memory check
    against the loaded model A first, then the load with the same flags as A."""

    def load(first: Model, source: str, progress: Callable[[str], None]) -> Model:
        fits(first, source)
        return make_loader(args, source)(progress)

    return load


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _say(text: str) -> None:
    print(f"… {visible(text)}", file=sys.stderr)


def run_headless_batch(
    args: argparse.Namespace, job: BatchJob, loader: Loader, make_loader: MakeLoader
) -> int:
    """``--mode batch`` without a screen: plain, A/B (``--compare``) or with ``--logprobs``."""
    if args.compare:
        from ..headless.compare import run_headless_compare

        return run_headless_compare(
            job,
            loader,
            make_loader(args, args.compare),
            before_second=fits,
            compare_source=args.compare,
        )
    from ..headless.run import run_headless

    return run_headless(job, loader, logprobs=getattr(args, "logprobs", None))


def run_perplexity_cmd(args: argparse.Namespace, source: str, make_loader: MakeLoader) -> int:
    """``--perplexity FILE [--compare B] [--stride N] [--output result.json]``."""
    from ..runtime.perplexity import run_perplexity

    loaders: list[Callable[[Callable[[str], None]], Any]] = [make_loader(args, source)]
    if args.compare:
        loaders.append(make_loader(args, args.compare))
    run_perplexity(
        loaders,
        args.perplexity,
        stride=args.stride,
        batch_size=args.batch_size,
        output=args.output,
    )
    return 0


def run_export(args: argparse.Namespace, source: str, make_loader: MakeLoader) -> int:
    """``--export OUT_DIR``: float32 unless ``--dtype`` (or auto on CUDA) says bfloat16."""
    from ..runtime.hf_export import export_checkpoint

    lm: Any = make_loader(args, source)(_say)
    for n in lm.notices:
        print(f"note: {visible(n)}", file=sys.stderr)
    dtype = args.dtype if args.dtype != "auto" else str(lm.dtype).removeprefix("torch.")
    out = export_checkpoint(lm, args.export, dtype=dtype)
    print(f"exported {visible(str(lm.source))} to {visible(str(out))} ({dtype})", file=sys.stderr)
    return 0


def run_info(args: argparse.Namespace, source: str, make_loader: MakeLoader) -> int:
    """Print the model card. Exit 0 without a tokenizer too: the card is still useful,
    and its "tokenizer" line says "not found" (the reason is a note on stderr).
    Every string here can come from the checkpoint (key names, metadata): `visible`.
    Progress lines only when stderr is a terminal (a script sees the card or one error)."""
    lm = make_loader(args, source, quiet=not stderr_is_terminal())(_say)
    for n in lm.notices:
        print(f"note: {visible(n)}", file=sys.stderr)
    card = {visible(str(k)): visible(str(v)) for k, v in lm.card().items()}
    width = max(len(k) for k in card)
    for k, v in card.items():
        print(f"{k.rjust(width)}  {v}")
    return 0
