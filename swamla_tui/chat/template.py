"""Conversation formats: the original script's ``You:``/``Assistant:`` lines, or ChatML.

Pure Python (no torch, no textual). A `ChatFormat` says how a system prompt, past turns
and the new message become the text the model continues, which strings end a reply and
how a finished reply is cut. Two formats exist:

* ``plain`` (formats v1 §7, byte for byte, the default)::

      <system>\\n\\n  You: <text>\\n  Assistant: <reply>\\n  ...  You: <new>\\n  Assistant:

* ``chatml`` (the trainer's inference script at HEAD, ``--chatml``; formats v2 §10)::

      <|im_start|>system\\n<system><|im_end|>\\n
      <|im_start|>user\\n<text><|im_end|>\\n<|im_start|>assistant\\n<reply><|im_end|>\\n
      ...
      <|im_start|>user\\n<new><|im_end|>\\n<|im_start|>assistant\\n

  with the default system prompt "You are a helpful assistant." and generation stopped at
  ``<|im_end|>`` (or a new ``<|im_start|>``).

ChatML is chosen by ``--chatml``, or detected when the tokenizer has both ``<|im_start|>``
and ``<|im_end|>`` as single (special) tokens (`detect_chat_format`). `FormattedModel`
wraps a loaded model so that every front end sees the choice: the chat reads
`chat_format_of(lm)`, and batch runs (`generate_batch`, used by the headless runner and
the batch view alike) get each prompt wrapped as a one-turn conversation and the
format's stop strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..base.params import BatchOptions, SamplingParams, StreamOptions
from ..base.stops import cut_at_stop
from ..protocols import BatchOutcome, BatchRecord, Model, ReplyStream

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "CHATML",
    "FORMATS",
    "PLAIN",
    "ChatFormat",
    "FormatName",
    "FormatOrigin",
    "FormattedModel",
    "chat_format_of",
    "detect_chat_format",
    "with_chat_format",
]

FormatName = Literal["plain", "chatml"]
FormatOrigin = Literal["default", "flag", "tokenizer"]

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"


@dataclass(frozen=True)
class ChatFormat:
    """How a conversation becomes the text the model continues."""

    name: FormatName
    label: str
    """Shown in the header, ``--info`` and ``/info``."""
    default_system: str | None
    """The system prompt used when none was given (None: no system prompt)."""
    stop: tuple[str, ...]
    """Stop strings passed to the engine: the model began the next turn."""

    def system_text(self, system: str | None) -> str:
        if not system:
            return ""
        if self.name == "chatml":
            return f"{IM_START}system\n{system}{IM_END}\n"
        return system + "\n\n"

    def turn_text(self, user: str, assistant: str) -> str:
        if self.name == "chatml":
            return f"{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n{assistant}{IM_END}\n"
        return f"You: {user}\nAssistant: {assistant}\n"

    def cue_text(self, user: str) -> str:
        """The new message and the assistant cue: generation starts right after it."""
        if self.name == "chatml":
            return f"{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"
        return f"You: {user}\nAssistant:"

    def cut_reply(self, generated: str) -> str:
        """The reply to keep: cut at the first stop string, surrounding blanks stripped.

        In the plain format the model's first token after ``"Assistant:"`` is normally a
        space, and the history line adds exactly one space back.
        """
        return cut_at_stop(generated, self.stop)[0].strip()

    def single_prompt(self, text: str, system: str | None) -> str:
        """A batch prompt: plain prompts are sent as they are (the original batch mode),
        ChatML prompts become one user turn after the system prompt."""
        if self.name == "plain":
            return text
        chosen = system if system is not None else self.default_system
        return self.system_text(chosen) + self.cue_text(text.strip())


PLAIN = ChatFormat("plain", "You:/Assistant: lines", None, ("\nYou:",))
CHATML = ChatFormat("chatml", "ChatML", "You are a helpful assistant.", (IM_END, IM_START))
FORMATS: dict[str, ChatFormat] = {f.name: f for f in (PLAIN, CHATML)}


def detect_chat_format(encode: Callable[[str], list[int]]) -> FormatName:
    """``"chatml"`` when the tokenizer has ``<|im_start|>`` and ``<|im_end|>`` as single
    tokens (instruction-tuned checkpoints add them as special tokens), else ``"plain"``.

    A tokenizer without them splits each into several byte-level pieces. Any failure
    (no tokenizer) means ``"plain"``.
    """
    try:
        return "chatml" if all(len(encode(t)) == 1 for t in (IM_START, IM_END)) else "plain"
    except Exception:  # noqa: BLE001 - no tokenizer: the plain format
        return "plain"


class FormattedModel:
    """A loaded model with its conversation format (see the module docstring).

    Everything but `card` and `generate_batch` is the wrapped model's; attributes not
    listed here (``config``, ``tokenizer``, ``model``...) are looked up on it too.
    """

    def __init__(
        self, lm: Model, chat_format: ChatFormat, origin: FormatOrigin, system: str | None
    ) -> None:
        self.lm = lm
        self.chat_format = chat_format
        self.origin = origin
        self.system = system

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lm, name)

    @property
    def source(self) -> str:
        return self.lm.source

    @property
    def notices(self) -> list[str]:
        return self.lm.notices

    @property
    def max_length(self) -> int:
        return self.lm.max_length

    def format_label(self) -> str:
        how = {"flag": " (--chatml)", "tokenizer": " (from the tokenizer)"}.get(self.origin, "")
        return self.chat_format.label + how

    def encode(self, text: str) -> list[int]:
        return self.lm.encode(text)

    def summary(self) -> str:
        return self.lm.summary()

    def card(self) -> dict[str, str]:
        card = dict(self.lm.card())
        card["chat format"] = self.format_label()
        return card

    def default_batch_size(self) -> int:
        return self.lm.default_batch_size()

    def stream(
        self,
        text: str,
        params: SamplingParams | None = None,
        **options: Unpack[StreamOptions],
    ) -> ReplyStream:
        return self.lm.stream(text, params, **options)

    def generate_batch(
        self,
        texts: Sequence[str],
        params: SamplingParams | None = None,
        **options: Unpack[BatchOptions],
    ) -> Iterator[BatchOutcome]:
        fmt = self.chat_format
        if fmt.name == "plain":
            yield from self.lm.generate_batch(texts, params, **options)
            return
        prompts = [fmt.single_prompt(t, self.system) for t in texts]
        formatted: BatchOptions = {**options, "stop": (*options.get("stop", ()), *fmt.stop)}
        for r in self.lm.generate_batch(prompts, params, **formatted):
            yield BatchRecord(
                r.index,
                texts[r.index],  # the user's prompt, not the formatted one
                r.completion.strip(),
                r.new_tokens,
                r.seconds,
                r.finish_reason,
                r.truncated,
                str(getattr(r, "error", "")),  # why a row failed: kept through the format
                getattr(r, "timings", None),
            )


def with_chat_format(lm: Model, *, chatml: bool, system: str | None) -> FormattedModel:
    """`lm` with its format: ChatML when asked (`chatml`) or detected, else plain."""
    if chatml:
        return FormattedModel(lm, CHATML, "flag", system)
    if detect_chat_format(lm.encode) == "chatml":
        return FormattedModel(lm, CHATML, "tokenizer", system)
    return FormattedModel(lm, PLAIN, "default", system)


def chat_format_of(lm: object) -> ChatFormat:
    """The format a model was opened with (`FormattedModel`), else the plain format."""
    fmt = getattr(lm, "chat_format", None)
    return fmt if isinstance(fmt, ChatFormat) else PLAIN
