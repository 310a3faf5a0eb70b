"""What the inspector asks of a model and its streams, and the recording wrapper.

`RecordingModel` is the model a reply streams from while ``/probs`` is on: the same
model, its streams opened with ``logprobs=TOP_N``, each stream's prompt text and stop
strings remembered (a branch continues from the same prompt). Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from ...base.params import SamplingParams, StreamOptions
from ...chat.token_tree import TOP_N, TokenRecord
from ...protocols import ChatModel, ReplyStream

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["InspectableModel", "InspectableStream", "RecordingModel"]


class InspectableStream(ReplyStream, Protocol):
    """A reply stream opened with ``logprobs=k`` (`TokenStream`, the test fakes)."""

    @property
    def token_ids(self) -> list[int]: ...

    @property
    def token_logprobs(self) -> Sequence[TokenRecord]: ...


class InspectableModel(ChatModel, Protocol):
    def decode(self, ids: Sequence[int]) -> str: ...


class RecordingModel:
    """`lm` whose streams record token probabilities; remembers each stream's prompt in
    `opened` (written by the reply worker, read on the UI thread: one dict operation
    each, atomic under the GIL)."""

    def __init__(self, lm: ChatModel, opened: dict[int, tuple[str, tuple[str, ...]]]) -> None:
        self.lm = lm
        self._opened = opened

    @property
    def max_length(self) -> int:
        return self.lm.max_length

    def encode(self, text: str) -> list[int]:
        return self.lm.encode(text)

    def card(self) -> dict[str, str]:
        return self.lm.card()

    def summary(self) -> str:
        return self.lm.summary()

    def stream(
        self,
        text: str,
        params: SamplingParams | None = None,
        **options: Unpack[StreamOptions],
    ) -> ReplyStream:
        stop = tuple(options.get("stop", ()))
        options["logprobs"] = TOP_N
        stream = self.lm.stream(text, params, **options)
        self._opened[id(stream)] = (text, tuple(stop))
        return stream
