"""The flags of the trainer's latest inference.py that the original script lacked
(formats G7 §10), with this app's meaning (README, "From the trainer's inference.py").

Kept out of `swamla_tui.cli.main` so the parser there stays readable; the actions they
start (``--eval_perplexity``, ``--diagnose``) live in `swamla_tui.cli.eval`.
"""

from __future__ import annotations

import argparse

from ..checkpoint.selection import STRATEGIES

__all__ = ["add_trainer_flags", "add_weight_flags"]


def add_trainer_flags(g: argparse._ArgumentGroup) -> None:
    """``--greedy``, the checkpoint selection flags, ``--eval_perplexity``, ``--no_autocast``,
    ``--diagnose`` (``--debug`` and ``--chatml`` are defined with the app's flags)."""
    g.add_argument(
        "--greedy",
        action="store_true",
        help="always the most likely token (temperature 0; the repetition penalty still applies)",
    )
    g.add_argument(
        "--hf_checkpoint_strategy",
        choices=STRATEGIES,
        default="latest",
        help="which checkpoint of a repo or run folder: latest (most tokens) or best_loss",
    )
    g.add_argument(
        "--nb_tok",
        metavar="COUNT",
        help="the checkpoint whose token count is closest to COUNT (e.g. 3.5B, 500M, 100k)",
    )
    g.add_argument(
        "--instruct",
        action="store_true",
        help="prefer instruct checkpoints (instruct/ folders, checkpoint_instruct_* files): "
        "the most instruct tokens, then base ones",
    )
    g.add_argument(
        "--eval_perplexity",
        metavar="TEXT_OR_FILE",
        help="print the perplexity of this text (a file if such a file exists), then exit",
    )
    g.add_argument(
        "--no_autocast",
        action="store_true",
        help="accepted for the original script: the model always computes in --dtype",
    )
    g.add_argument(
        "--diagnose",
        action="store_true",
        help="print config, stored dtypes, weight statistics, residual scalars and the "
        "perplexity of a fixed sentence in float32 and bfloat16 (with their KL), then exit",
    )


def add_weight_flags(g: argparse._ArgumentGroup) -> None:
    """Which weights run: ``--ema`` / ``--no_ema`` (the trainer's script uses a G7 file's EMA
    copies by default; we run the trained weights) and ``--ignore-unknown-weights``."""
    g.add_argument(
        "--ema",
        action="store_true",
        help="run a G7 checkpoint's EMA copies as the trainer's inference.py does (its EMA "
        "never moves from the step-0 weights); default: the trained weights",
    )
    g.add_argument("--no_ema", action="store_true", help="accepted; the default already")
    g.add_argument(
        "--ignore-unknown-weights",
        dest="ignore_unknown_weights",
        action="store_true",
        help="load a checkpoint holding tensors this version does not know, without them "
        "(refused otherwise; the header and --info keep a warning)",
    )
