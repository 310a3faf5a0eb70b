"""Small persistent UI settings (theme) stored as JSON in the data folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..base.errors import SwamlaError
from ..base.paths import read_regular

SETTINGS_FILE = "settings.json"


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
