"""The CLI's one-shot actions besides chat: ``--info``, ``--perplexity``, ``--export``, ``--eval``, and the
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
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

from ..base.errors import SwamlaError, one_line
from ..base.safe_text import visible
from ..batch.job import BatchJob
from ..checkpoint.selection import Selection, parse_nb_tok
from ..protocols import Loader, Model

__all__ = [
    "LOGPROBS_MAX",
    "MakeLoader",
    "check_eval_args",
    "compare_args",
    "fits",
    "checkpoint_listing",
    "run_diagnose",
    "run_eval_cmd",
    "run_export",
    "run_headless_batch",
    "run_info",
    "run_perplexity_cmd",
    "second_loader",
    "selection_of",
    "stderr_is_terminal",
]

LOGPROBS_MAX = 20
"""Largest ``--logprobs N`` (alternatives per token; the JSONL grows with it)."""


class MakeLoader(Protocol):
    """`cli.make_loader`: the loader of checkpoint `source` as the flags describe it."""

    def __call__(self, args: argparse.Namespace, source: str, *, quiet: bool = False) -> Loader: ...


def check_eval_args(args: argparse.Namespace) -> str | None:
    """The evaluate/export flags: one action at a time, and flags only where they apply."""
    actions = [
        f"--{name}"
        for name in ("perplexity", "eval_perplexity", "export", "diagnose", "eval")
        if getattr(args, name, None) not in (None, False)
    ]
    if actions == ["--perplexity", "--export"]:
        return "give either --perplexity or --export, not both"
    if len(actions) > 1:
        return f"give one of {', '.join(actions)}, not several"
    if getattr(args, "diagnose", False) and (args.info or args.compare):
        return f"--diagnose does not apply to {'--info' if args.info else '--compare'}"
    scores = args.perplexity or getattr(args, "eval_perplexity", None) is not None
    if scores and args.info:
        return "--info does not apply to a perplexity run"
    if getattr(args, "expert_stats", None) and not (scores or getattr(args, "logprobs", None)):
        return (
            "--expert-stats applies only to --perplexity (and --eval_perplexity) or to a"
            " headless batch run with --logprobs N (the routing is recorded with them)"
        )
    if args.stride is not None:
        if not scores:
            return "--stride applies only to --perplexity"  # (and --eval_perplexity)
        if args.stride < 1:
            return f"--stride must be >= 1, got {args.stride}"
        if args.stride >= args.max_length:  # the window is at most --max_length: no load needed
            return (
                f"--stride must be below the window (--max_length {args.max_length}), "
                f"got {args.stride}"
            )
    windows = getattr(args, "windows", None)
    if windows is not None and not scores:
        return "--windows applies only to --perplexity"
    if windows == "rolling" and args.stride is not None:
        return "--stride applies to --windows strided, not rolling"
    for flag in ("compare_dtype", "compare_quantize"):
        if getattr(args, flag, None) is not None and not (args.compare and scores):
            return f"--{flag} applies only to --perplexity with --compare"
    if args.compare and (args.export or args.info):
        return f"--compare does not apply to {'--export' if args.export else '--info'}"
    if getattr(args, "eval", None) and (args.compare or args.info):
        return f"--eval does not apply to {'--compare' if args.compare else '--info'}"
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


def selection_of(args: argparse.Namespace) -> Selection:
    """``--instruct``, ``--hf_checkpoint_strategy``, ``--nb_tok`` (checked by `check_args`)."""
    nb = getattr(args, "nb_tok", None)
    return Selection(
        instruct=bool(getattr(args, "instruct", False)),
        strategy=getattr(args, "hf_checkpoint_strategy", "latest"),
        nb_tok=None if nb is None else parse_nb_tok(nb),
    )


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

    return run_headless(
        job,
        loader,
        logprobs=getattr(args, "logprobs", None),
        expert_stats=getattr(args, "expert_stats", None),
    )


def run_perplexity_cmd(args: argparse.Namespace, source: str, make_loader: MakeLoader) -> int:
    """``--perplexity FILE`` or ``--eval_perplexity TEXT|FILE`` (the trainer's flag: a file
    when a file of that name exists, else the text itself) ``[--compare B] [--stride N]
    [--output result.json]``."""
    from ..runtime.perplexity import run_perplexity

    if args.perplexity and _may_sweep(args):
        done = _sweep(args, source, make_loader)
        if done is not None:
            return done
    loaders: list[Callable[[Callable[[str], None]], Any]] = [make_loader(args, source)]
    if args.compare:
        loaders.append(make_loader(compare_args(args), args.compare))
    target = args.perplexity
    text = getattr(args, "eval_perplexity", None)
    if text is not None and not target:
        if _is_file(text):
            target = text
        else:
            return _perplexity_of_text(args, loaders, text)
    run_perplexity(
        loaders,
        target,
        stride=args.stride,
        batch_size=args.batch_size,
        output=args.output,
        windows=windows_of(args),
        expert_stats=getattr(args, "expert_stats", None),
    )
    return 0


def windows_of(args: argparse.Namespace) -> str:
    """``--windows`` (strided unless given)."""
    return getattr(args, "windows", None) or "strided"


def _may_sweep(args: argparse.Namespace) -> bool:
    """A run folder or repo is swept unless one checkpoint is named or a B is compared."""
    one = args.compare or args.hf_checkpoint or getattr(args, "expert_stats", None)
    return not (one or getattr(args, "nb_tok", None))


def _sweep(args: argparse.Namespace, source: str, make_loader: MakeLoader) -> int | None:
    """``--perplexity FILE`` over every checkpoint of a run (`swamla_tui.runtime.sweep`);
    None when `source` holds fewer than two (one file, a flat folder, a single folder)."""
    from ..runtime.sweep import run_sweep, sweep_candidates

    try:
        cands = sweep_candidates(source, selection_of(args))
    except Exception:  # noqa: BLE001 - listing failed: the single load says why, in one line
        return None
    if len(cands) < 2:
        return None
    out = getattr(args, "output", None)
    if out and Path(out).suffix.lower() not in (".json", ".csv"):
        raise SwamlaError(f"--output {out}: a checkpoint sweep writes .json or .csv")

    def loader_of(sub: str) -> Loader:
        return make_loader(argparse.Namespace(**{**vars(args), "hf_checkpoint": sub}), source)

    local = Path(source).expanduser()
    settings = {
        "source": str(local.resolve()) if local.exists() else source,  # however it is spelled
        "max_length": args.max_length,
        "dtype": args.dtype,
        "quantize": getattr(args, "quantize", None),
        "tokenizer": args.tokenizer,
        "swa_attention": args.swa_attention,
    }
    run_sweep(
        loader_of,
        cands,
        args.perplexity,
        settings=settings,
        stride=args.stride,
        batch_size=args.batch_size,
        output=args.output,
        overwrite=bool(getattr(args, "overwrite", False)),
        windows=windows_of(args),
    )
    return 0


def compare_args(args: argparse.Namespace) -> argparse.Namespace:
    """The flags model B loads with: A's, with ``--compare_dtype``/``--compare_quantize``."""
    b = argparse.Namespace(**vars(args))
    if getattr(args, "compare_dtype", None) is not None:
        b.dtype = args.compare_dtype
    q = getattr(args, "compare_quantize", None)
    if q is not None:
        b.quantize = None if q == "none" else q
    return b


def _is_file(text: str) -> bool:
    """Whether a text names an existing file (a long text is no file name: OSError)."""
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


def _perplexity_of_text(
    args: argparse.Namespace, loaders: list[Callable[[Callable[[str], None]], Any]], text: str
) -> int:
    """`run_perplexity` for a literal text: same table, same JSON, models one at a time."""
    from ..base.experts import format_summary, summarise, write_summary
    from ..base.scoring import format_results
    from ..engine.routing import RouteTally
    from ..runtime.perplexity import PerplexityError, perplexity, write_results_json

    if not text.strip():
        raise PerplexityError("--eval_perplexity: the text is empty")
    results = []
    stats_path = getattr(args, "expert_stats", None)
    for i, load in enumerate(loaders):
        lm: Any = load(_say)
        for n in lm.notices:
            print(f"note: {visible(n)}", file=sys.stderr)
        tally = RouteTally(lm.model) if stats_path and i == 0 else None
        with tally or nullcontext():
            res = perplexity(
                lm,
                text,
                stride=args.stride,
                batch_size=args.batch_size,
                windows=windows_of(args),
                tally=tally,
            )
        results.append(res)
        if tally is not None and stats_path:
            stats = summarise("perplexity", *tally.tallies())
            write_summary(stats, stats_path)
            print(format_summary(stats), file=sys.stderr)
        del lm
    print(format_results(results))
    if args.output:
        write_results_json(results, args.output)
    return 0


def run_eval_cmd(args: argparse.Namespace, source: str, make_loader: MakeLoader) -> int:
    """``--eval TASKS``: lm-evaluation-harness on our engine (`swamla_tui.evaluate`, imported
    only here); a run folder or repo with several checkpoints: each, one loaded at a time."""
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise SwamlaError("--eval needs lm-evaluation-harness: pip install 'swamla-tui[eval]'")
    from ..evaluate.run import run_eval

    loaders: list[tuple[str, Loader]] = [(source, make_loader(args, source))]
    if _may_sweep(args):
        from ..runtime.sweep import sweep_candidates

        try:
            cands = sweep_candidates(source, selection_of(args))
        except Exception:  # noqa: BLE001 - listing failed: the single load says why
            cands = []
        if len(cands) > 1:
            loaders = [
                (
                    c.path,
                    make_loader(
                        argparse.Namespace(**{**vars(args), "hf_checkpoint": c.path}), source
                    ),
                )
                for c in cands
            ]
    run_eval(loaders, args.eval, batch_size=args.batch_size, output=args.output)
    return 0


def run_diagnose(args: argparse.Namespace, source: str, make_loader: MakeLoader) -> int:
    """``--diagnose``: the card of `swamla_tui.runtime.diagnose` (loads float32, then
    bfloat16, on ``--device``), then exit."""
    from ..runtime.diagnose import diagnose, format_diagnosis

    quiet = not stderr_is_terminal()
    load32 = make_loader(
        argparse.Namespace(**{**vars(args), "dtype": "float32"}), source, quiet=quiet
    )
    load16 = make_loader(
        argparse.Namespace(**{**vars(args), "dtype": "bfloat16"}), source, quiet=quiet
    )
    d = diagnose(load32, load16, _say if not quiet else (lambda _s: None))
    for n in d.notes:
        print(f"note: {visible(n)}", file=sys.stderr)
    print(visible(format_diagnosis(d)))
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
    listing = checkpoint_listing(args, source)
    if listing:
        print()
        print("\n".join(visible(line) for line in listing))
    return 0


def checkpoint_listing(args: argparse.Namespace, source: str) -> list[str]:
    """The checkpoints of a Hub repo or run folder, `*` on the one opened (empty for one file).

    It lists names again (the loader does not keep them), by the same rule, so the mark
    is the loader's choice; a listing that fails is a note, the card is already out.
    """
    from ..checkpoint.sources import survey

    try:
        cands, chosen = survey(source, args.hf_checkpoint, selection_of(args))
    except Exception as e:  # noqa: BLE001 - the card was printed; the listing is extra
        print(
            f"note: cannot list the checkpoints of {visible(source)}: {one_line(e)}",
            file=sys.stderr,
        )
        return []
    if not cands:
        return []
    width = max(len(c.path) for c in cands)
    lines = [f"checkpoints ({len(cands)}; * = opened):"]
    for c in sorted(cands, key=lambda c: (c.kind, c.rank_tokens or 0.0, c.tokens or 0.0, c.path)):
        mark = "*" if chosen is not None and c.path == chosen.path else " "
        lines.append(f"  {mark} {c.path.ljust(width)}  {c.describe()}")
    return lines
