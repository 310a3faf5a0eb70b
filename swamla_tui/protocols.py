"""What the front ends need from a model, a reply stream and a batch result (torch-free).

The UI, the chat session, the batch core and the test fakes are written against these
Protocols, not against `swamla_tui.runtime.load.LoadedModel`, so that nothing above the loader
imports torch and the fakes are held to the same contract as the real thing (see
tests/unit/test_stream_contract.py). docs/ARCHITECTURE.md describes the semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .base.params import BatchOptions, SamplingParams, StreamOptions
from .base.scoring import PerplexityResult, ScoreOptions
from .base.timings import ReplyTimings

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

__all__ = [
    "BatchModel",
    "BatchOutcome",
    "BatchRecord",
    "ChatModel",
    "Loader",
    "Model",
    "ReplyStream",
]


class ReplyStream(Protocol):
    """One reply as an iterator of text pieces (`lm.stream`).

    Pieces never contain a stop string: the stream ends before it with ``finish_reason``
    ``"stop"``. `params` is the live object read before each token; `cancel()` is
    thread-safe and ends the stream within one token (``"cancelled"``).
    """

    params: SamplingParams
    finish_reason: str | None
    truncated: bool

    @property
    def text(self) -> str: ...

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def new_tokens(self) -> int: ...

    @property
    def context_tokens(self) -> int: ...

    @property
    def tokens_per_second(self) -> float: ...

    @property
    def timings(self) -> ReplyTimings:
        """The reply's figures so far (`swamla_tui.base.timings`); final once it ended."""
        ...

    def cancel(self) -> None: ...

    def __iter__(self) -> Iterator[str]: ...


class BatchOutcome(Protocol):
    """One prompt's result from `generate_batch` (`index` counts within the call)."""

    @property
    def index(self) -> int: ...

    @property
    def prompt(self) -> str: ...

    @property
    def completion(self) -> str: ...

    @property
    def new_tokens(self) -> int: ...

    @property
    def seconds(self) -> float: ...

    @property
    def finish_reason(self) -> str: ...

    @property
    def truncated(self) -> bool: ...


@dataclass(frozen=True)
class BatchRecord:
    """A plain `BatchOutcome`: what a wrapper or a fake yields without the engine's
    `BatchResult` (the chat-format wrapper re-labels the engine's rows with this)."""

    index: int
    prompt: str
    completion: str
    new_tokens: int
    seconds: float
    finish_reason: str
    truncated: bool = False
    error: str = ""
    """Why the row failed (``finish_reason`` "error"); empty otherwise."""
    timings: ReplyTimings | None = None
    """The row's figures when the model measured them (`BatchResult.timings`)."""


class ChatModel(Protocol):
    """What the chat screen needs: describe the model, count tokens, stream a reply."""

    @property
    def max_length(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def card(self) -> dict[str, str]: ...

    def summary(self) -> str: ...

    def stream(
        self,
        text: str,
        params: SamplingParams | None = None,
        **options: Unpack[StreamOptions],
    ) -> ReplyStream: ...


class BatchModel(Protocol):
    """What a batch run needs: prompts in, one `BatchOutcome` per prompt out."""

    @property
    def max_length(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def default_batch_size(self) -> int: ...

    def generate_batch(
        self,
        texts: Sequence[str],
        params: SamplingParams | None = None,
        **options: Unpack[BatchOptions],
    ) -> Iterator[BatchOutcome]: ...


class Model(ChatModel, BatchModel, Protocol):
    """A loaded model as the front ends see it (`LoadedModel` satisfies it)."""

    @property
    def source(self) -> str: ...

    @property
    def notices(self) -> list[str]: ...


Loader = Callable[[Callable[[str], None]], Model]
"""``loader(progress) -> Model``: loads the model, reporting steps through `progress`."""


class ScoringModel(Protocol):
    """What ``/ppl`` needs: the perplexity of a text (`LoadedModel.perplexity`)."""

    source: str

    def perplexity(self, text: str, **options: Unpack[ScoreOptions]) -> PerplexityResult: ...
