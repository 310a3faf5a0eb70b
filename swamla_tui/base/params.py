"""Sampling parameters shared by the engine, the CLI and the UI (no torch import), and the
keyword options of a stream and a batch call (`StreamOptions`, `BatchOptions`).

`PARAM_SPECS` is the one table of accepted ranges: the CLI checks its flags against it,
the slash commands parse values with it, and the sampling sliders are built from it, so a
value one front end accepts is never clamped by another.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal, TypedDict

TunableName = Literal["temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens"]


@dataclass(frozen=True)
class ParamSpec:
    """One tunable: its accepted range and how a slider steps through it."""

    name: TunableName
    label: str
    lo: float
    hi: float
    """Upper bound. For ``max_new_tokens`` it is only the cap before a model is known:
    once loaded, the model's context length (`max_length`) is the bound."""
    step: float
    big_step: float
    integer: bool = False

    def accepts(self, value: float, hi: float | None = None) -> bool:
        """Whether `value` lies in the range (`hi` overrides the upper bound)."""
        top = self.hi if hi is None else hi
        return self.lo <= value <= top


PARAM_SPECS: dict[str, ParamSpec] = {
    spec.name: spec
    for spec in (
        ParamSpec("temperature", "Temperature", 0.0, 2.0, 0.05, 0.25),
        ParamSpec("top_k", "Top-k", 0, 200, 1, 10, integer=True),
        ParamSpec("top_p", "Top-p", 0.0, 1.0, 0.01, 0.1),
        ParamSpec("repetition_penalty", "Repetition penalty", 1.0, 2.0, 0.01, 0.1),
        ParamSpec("max_new_tokens", "Max new tokens", 1, 2048, 1, 32, integer=True),
    )
}

RANGES: dict[str, tuple[float, float]] = {n: (s.lo, s.hi) for n, s in PARAM_SPECS.items()}
"""(min, max) of each tunable, from `PARAM_SPECS`."""


@dataclass
class SamplingParams:
    """Live sampling settings.

    The engine reads this object before every token, so a UI that mutates the instance
    held by a running stream changes the reply from its next token on.
    """

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    max_new_tokens: int = 256
    seed: int | None = None

    def copy(self, **changes: object) -> SamplingParams:
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class BatchOptions(TypedDict, total=False):
    """The keyword options of `generate_batch`, declared once: the `BatchModel` Protocol,
    `LoadedModel`, the chat-format wrapper and the test fakes all take
    ``**options: Unpack[BatchOptions]``, so an option added here reaches every one of them.
    """

    batch_size: int | None
    """Rows decoded together; None (or absent): the model's `default_batch_size()`."""
    stop: Sequence[str]
    """Stop strings: a row ends before the first one its completion contains."""
    cancel: threading.Event | None
    """Set from another thread: the rows not yet finished end as ``"cancelled"``."""


class StreamOptions(TypedDict, total=False):
    """The keyword options of `stream`: stop strings, one-call sampling overrides, and
    what the inspector asks (``logprobs``, ``prefix_ids``).

    Declared once for the `ChatModel` Protocol, `LoadedModel`, the chat-format wrapper and
    the test fakes (``**options: Unpack[StreamOptions]``). An override makes the stream read
    a copy of `params`, so the caller's live object is never changed.
    """

    stop: Sequence[str]
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    max_new_tokens: int
    seed: int | None
    logprobs: int | None
    """Record each token's probabilities and top-k alternatives
    (`swamla_tui.engine.logprobs`; the stream's ``token_logprobs``)."""
    prefix_ids: Sequence[int]
    """Token ids appended after the encoded text (a reply continued from given tokens,
    e.g. an inspector branch: no token boundary moves by re-tokenizing)."""
    cache_key: str | None
    """Keep this conversation's decode state for its next turn under this key
    (`swamla_tui.engine.prompt_cache`: only the new part of the next prompt is prefilled)."""
