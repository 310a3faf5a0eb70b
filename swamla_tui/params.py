"""Sampling parameters shared by the engine, the CLI and the UI (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

# (min, max) accepted for each tunable; the UI sliders and slash commands use them too.
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_k": (0, 200),
    "top_p": (0.0, 1.0),
    "repetition_penalty": (1.0, 2.0),
    "max_new_tokens": (1, 2048),
}


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
        return replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
