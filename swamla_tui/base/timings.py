"""Per-reply timings, the figures `ollama run --verbose` prints after each reply.

Filled by the engine's stream (`TokenStream.timings`), shown by the chat's ``/stats`` and
written into batch rows and headless JSONL; torch-free so every front end can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TIMING_FIELDS", "ReplyTimings"]

TIMING_FIELDS: tuple[str, ...] = (
    "prompt_tokens",
    "cached_tokens",
    "prefill_s",
    "prefill_tok_s",
    "ttft_s",
    "generated_tokens",
    "decode_s",
    "decode_tok_s",
)
"""The keys of `ReplyTimings.fields`: the timing columns of batch rows and JSONL records."""


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 and tokens > 0 else 0.0


@dataclass(frozen=True)
class ReplyTimings:
    prompt_tokens: int
    """Ids of the prompt the model saw (after a cut at max_length)."""
    cached_tokens: int
    """Prompt ids the turn-to-turn cache already held: not prefilled again."""
    prefill_s: float
    """From the call to the first logits: tokenizing aside, the prompt's prefill."""
    ttft_s: float | None
    """From the call to the first generated token (None: no token came)."""
    generated_tokens: int
    decode_s: float
    """From the first generated token to the last: the decode rate's time base."""
    load_s: float | None = None
    """How long loading the model took (the same for every reply of one model)."""

    @property
    def prefill_tokens(self) -> int:
        return max(0, self.prompt_tokens - self.cached_tokens)

    @property
    def prefill_tok_s(self) -> float:
        return _rate(self.prefill_tokens, self.prefill_s)

    @property
    def decode_tok_s(self) -> float:
        """Tokens after the first per second (the first one's wait is the prefill's)."""
        return _rate(self.generated_tokens - 1, self.decode_s)

    def fields(self) -> dict[str, float | int | None]:
        """The JSON fields of a batch row / headless record (rounded for reading)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "prefill_s": round(self.prefill_s, 4),
            "prefill_tok_s": round(self.prefill_tok_s, 1),
            "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 4),
            "generated_tokens": self.generated_tokens,
            "decode_s": round(self.decode_s, 4),
            "decode_tok_s": round(self.decode_tok_s, 1),
        }

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows as ``ollama run --verbose`` prints them."""
        rows: list[tuple[str, str]] = []
        if self.load_s is not None:
            rows.append(("load duration", f"{self.load_s:.2f}s"))
        hit = f" ({self.cached_tokens} reused from the last turn)" if self.cached_tokens else ""
        rows += [
            ("prompt eval count", f"{self.prompt_tokens} token(s){hit}"),
            ("prompt eval duration", f"{self.prefill_s * 1000:.1f}ms"),
            ("prompt eval rate", f"{self.prefill_tok_s:.2f} tokens/s"),
            ("time to first token", "-" if self.ttft_s is None else f"{self.ttft_s * 1000:.1f}ms"),
            ("eval count", f"{self.generated_tokens} token(s)"),
            ("eval duration", f"{self.decode_s * 1000:.1f}ms"),
            ("eval rate", f"{self.decode_tok_s:.2f} tokens/s"),
        ]
        return rows
