"""Small persistent UI settings stored as JSON in the data folder: the theme, Markdown,
token probabilities, and the sampling settings (`remembered_params`).

Sampling settings changed in the app (sliders, slash commands) are remembered; at the next
start they replace the defaults of the settings not given on the command line (a flag
given explicitly wins for that run, and is not remembered unless changed in the app).
``/defaults`` puts the built-in defaults back and forgets the remembered values. A value
read back that is out of range or of the wrong type is ignored (the file may be edited).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..base.errors import SwamlaError
from ..base.params import PARAM_SPECS, SamplingParams
from ..base.paths import read_regular

SETTINGS_FILE = "settings.json"
SAMPLING_KEY = "sampling"
REMEMBERED: tuple[str, ...] = (
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "max_new_tokens",
)
"""The sampling settings remembered across starts (the seed is not: it is per run)."""


class Settings:
    """A JSON dict on disk; failures to read or write are ignored (settings are a comfort)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / SETTINGS_FILE
        self.data: dict[str, Any] = {}
        try:  # a FIFO or a device there must not block or fill the app at start
            raw = read_regular(self.path, "settings file", limit=1 << 20)
            loaded = json.loads(raw.decode("utf-8"))
            if isinstance(loaded, dict):
                self.data = loaded
        except (SwamlaError, ValueError, RecursionError):
            pass

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self.data.get(key) == value:
            return
        self.data[key] = value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True), encoding="utf-8")
            tmp.replace(self.path)
        except OSError:
            pass


def _valid(name: str, value: object) -> bool:
    spec = PARAM_SPECS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if spec.integer and not isinstance(value, int):
        return False
    hi = math.inf if name == "max_new_tokens" else None  # the model's context bounds it
    return math.isfinite(value) and spec.accepts(value, hi)


def remembered_params(
    settings: Settings, params: SamplingParams, given: frozenset[str] | None
) -> list[str]:
    """Set the remembered sampling settings on `params`, except those in `given` (None:
    all given); returns the names set."""
    saved = settings.get(SAMPLING_KEY)
    if given is None or not isinstance(saved, dict):
        return []
    applied = []
    for name in REMEMBERED:
        value = saved.get(name)
        if name not in given and _valid(name, value):
            setattr(params, name, value)
            applied.append(name)
    return applied


def remember_param(settings: Settings, name: str, value: object) -> None:
    """Remember one sampling setting changed in the app (the others keep their
    remembered values: one given on the command line is not remembered by this)."""
    if name not in REMEMBERED:
        return
    saved = settings.get(SAMPLING_KEY)
    kept = dict(saved) if isinstance(saved, dict) else {}
    kept[name] = value
    settings.set(SAMPLING_KEY, kept)


def forget_params(settings: Settings) -> SamplingParams:
    """Forget the remembered sampling settings; returns the built-in defaults."""
    settings.set(SAMPLING_KEY, {})
    return SamplingParams()
