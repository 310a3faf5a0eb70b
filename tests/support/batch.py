"""Test support for batch runs: a fast fake batch model, a tokenizer that emits ids beyond
the model's vocabulary, and the subprocess helpers of the resume and torchrun tests."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App

from swamla_tui.base.params import BatchOptions, SamplingParams
from swamla_tui.ui.screens.batch import BatchScreen
from tests.support.fakes import Outcome
from tests.support.helpers import FIXTURE_CKPT, ROOT

if TYPE_CHECKING:
    from typing_extensions import Unpack


class EchoBatchLM:
    """`BatchModel` that answers each prompt with its reverse, at once.

    Prompts containing ``BAD`` fail (``finish_reason`` "error"). `after(n)`, when given,
    runs after the n-th result of the model's life (to interrupt a run mid-way).
    """

    def __init__(self, after: Callable[[int], None] | None = None) -> None:
        self.after = after
        self.count = 0
        self.ran: list[str] = []
        self.max_length = 512
        self.source = "echo"
        self.notices: list[str] = []

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 512 for c in text]

    def default_batch_size(self) -> int:
        return 2

    def generate_batch(
        self,
        texts: Sequence[str],
        params: SamplingParams | None = None,
        **options: Unpack[BatchOptions],
    ) -> Iterator[Outcome]:
        cancel = options.get("cancel")
        for i, text in enumerate(texts):
            if cancel is not None and cancel.is_set():
                yield Outcome(i, text, "", 0, 0.0, "cancelled")
                continue
            self.ran.append(text)
            if "BAD" in text:
                yield Outcome(i, text, "", 0, 0.0, "error", error="token id 999 is beyond it")
            else:
                yield Outcome(i, text, text[::-1], len(text), 0.01, "length")
            self.count += 1
            if self.after is not None:
                self.after(self.count)


class OutOfVocabTokenizer:
    """Wraps a tokenizer; prompts containing ``BIG`` encode to an id beyond `vocab`."""

    def __init__(self, inner: Any, vocab: int) -> None:
        self.inner = inner
        self.vocab = vocab
        self.eos_token_id = getattr(inner, "eos_token_id", None)

    def __len__(self) -> int:
        return len(self.inner)

    def encode(self, text: str, **kw: object) -> list[int]:
        ids: list[int] = self.inner.encode(text, **kw)
        return [*ids, self.vocab + 7] if "BIG" in text else ids

    def decode(self, ids: list[int], **kw: object) -> str:
        return str(self.inner.decode(ids, **kw))


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of `path` (every line must be complete and valid)."""
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def without_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows without what a clock measured (`seconds`, and the `*_s` / `*_tok_s` timing
    fields); the token counts stay, they are the same in every run."""
    return [
        {k: v for k, v in r.items() if k != "seconds" and not k.endswith("_s")} for r in records
    ]


def cli_argv(tokenizer: Path, prompts: Path, output: Path, *extra: object) -> list[str]:
    """The CLI flags of a greedy headless run on the reference fixture."""
    return [
        "--checkpoint",
        str(FIXTURE_CKPT),
        "--tokenizer",
        str(tokenizer),
        "--mode",
        "batch",
        "--device",
        "cpu",
        "--temperature",
        "0",
        "--prompts_file",
        str(prompts),
        "--output",
        str(output),
        *map(str, extra),
    ]


def subprocess_env() -> dict[str, str]:
    """The environment of a CLI child: this checkout first on the path, offline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def torchrun_cmd(nproc: int, port: int, argv: list[str]) -> list[str]:
    """``torchrun --nproc_per_node nproc -m swamla_tui ...`` on loopback only."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "swamla_tui",
        *argv,
    ]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BatchTestApp(App[None]):
    """A bare app that opens the batch view, like `SwamlaApp.open_batch` does."""

    def __init__(self, screen_factory) -> None:
        super().__init__()
        self.screen_factory = screen_factory
        self.batch: BatchScreen | None = None
        self.dismissed: list[object] = []
        self.sampling_events: list[object] = []

    def on_mount(self) -> None:
        self.batch = self.screen_factory()
        self.push_screen(self.batch, self.dismissed.append)

    def on_sampling_sidebar_changed(self, event) -> None:
        self.sampling_events.append(event)  # the batch screen must keep these to itself


class WrappedLM:
    """A test's batch model around a real one: its tokenizer and batch size; the subclass
    says what `generate_batch` does (gate it, record it, fix its timings)."""

    batch_size = 2

    def __init__(self, lm: Any) -> None:
        self.lm = lm

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.lm.encode(text)
        return ids

    def default_batch_size(self) -> int:
        return self.batch_size


class FixedTimeLM(WrappedLM):
    """The fixture model with every result's seconds fixed (stable snapshots)."""

    batch_size = 4

    def __init__(self, lm: Any, seconds: float = 0.5) -> None:
        super().__init__(lm)
        self.seconds = seconds
        self.max_length: int = lm.max_length

    def generate_batch(
        self,
        texts: Sequence[str],
        params: SamplingParams | None = None,
        **options: Unpack[BatchOptions],
    ) -> Iterator[Outcome]:
        for res in self.lm.generate_batch(
            texts,
            params,
            batch_size=options.get("batch_size"),
            stop=options.get("stop", ()),
            cancel=options.get("cancel"),
        ):
            yield replace(res, seconds=self.seconds)
