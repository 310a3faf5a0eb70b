"""Settings are a comfort: a FIFO, a device or deep JSON in their place is ignored, never
a hang or a crash at start (issue 21 item 6)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swamla_tui.ui.settings import SETTINGS_FILE, Settings


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.timeout(20)
def test_a_fifo_settings_file_is_ignored(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / SETTINGS_FILE)
    assert Settings(tmp_path).data == {}


@pytest.mark.timeout(20)
def test_a_device_or_deep_json_is_ignored(tmp_path: Path) -> None:
    (tmp_path / SETTINGS_FILE).symlink_to("/dev/zero")
    assert Settings(tmp_path).data == {}
    (tmp_path / SETTINGS_FILE).unlink()
    (tmp_path / SETTINGS_FILE).write_text("[" * 100_000 + "]" * 100_000)
    assert Settings(tmp_path).data == {}


def test_settings_round_trip(tmp_path: Path) -> None:
    Settings(tmp_path).set("theme", "swamla-light")
    assert Settings(tmp_path).get("theme") == "swamla-light"
