"""The full-screen app's start-up settings, built by the CLI (no textual import here).

Kept apart from `swamla_tui.ui.app` so the CLI can build it without importing textual,
and so `SwamlaApp` and `run_app` take one typed object instead of nine keywords.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..base.params import SamplingParams
from ..chat.conversations import ModelRef
from ..protocols import Model

SecondLoader = Callable[[Model, str, Callable[[str], None]], Model]
"""``load_second(first, source, progress)``: load checkpoint `source` as model B next to
`first`, refusing first when both would not fit (the CLI's; the UI never imports torch)."""

Mode = Literal["chat", "batch"]


@dataclass
class AppOptions:
    """How the app starts.

    `params` is the live object the sliders, slash commands and the running reply share.
    `mode` "batch" opens the batch view on `prompts_file` (None: the default prompts)
    with `batch_size` (None: the model's default) once the model is loaded. `data_dir`
    None means `swamla_tui.base.paths.data_dir()`. `compare` (``--compare B``): a second
    checkpoint, loaded with `load_second` in a worker once the first is loaded (A/B in the
    batch view, ``/compare`` in the chat; ``/compare PATH`` loads another). `probs`
    (``--debug``): token probabilities on from the start (None: the remembered /probs).
    """

    params: SamplingParams = field(default_factory=SamplingParams)
    system_prompt: str | None = None
    theme: str | None = None
    resume: bool | str = False
    """``--resume``: True reopens the latest conversation, a path that transcript."""
    mode: Mode = "chat"
    prompts_file: str | None = None
    batch_size: int | None = None
    notice: str | None = None
    data_dir: Path | None = None
    compare: str | None = None
    load_second: SecondLoader | None = None
    probs: bool | None = None
    model: ModelRef | None = None
    """What the CLI opened (source, ``--hf_checkpoint``), recorded in the transcript so
    ``--resume`` reopens it; None: the loaded model's own source."""
    params_given: frozenset[str] | None = None
    """The sampling settings of `params` given on the command line; the others start
    from their remembered values. None: all given (the remembered values are not used)."""
