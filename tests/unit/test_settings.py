"""Settings: remembered sampling values (issue 22 item 7: what is read back, what the
command line's flags keep, ``/defaults``), and a FIFO, a device or deep JSON in their place
ignored, never a hang or a crash at start (issue 21 item 6)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from swamla_tui.base.params import SamplingParams
from swamla_tui.cli.main import given_params
from swamla_tui.ui.settings import (
    SAMPLING_KEY,
    SETTINGS_FILE,
    Settings,
    forget_params,
    remember_param,
    remembered_params,
)


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


def test_remembered_values_fill_what_was_not_given(tmp_path):
    settings = Settings(tmp_path)
    for name, value in [
        ("temperature", 0.3),
        ("top_k", 7),
        ("top_p", 0.5),
        ("repetition_penalty", 1.4),
        ("max_new_tokens", 999),
        ("seed", 5),
    ]:
        remember_param(settings, name, value)
    saved = json.loads((tmp_path / "settings.json").read_text())[SAMPLING_KEY]
    assert "seed" not in saved  # the seed is per run
    params = SamplingParams(temperature=1.9)
    applied = remembered_params(Settings(tmp_path), params, frozenset({"temperature"}))
    assert applied == ["top_k", "top_p", "repetition_penalty", "max_new_tokens"]
    assert (params.temperature, params.top_k, params.top_p) == (1.9, 7, 0.5)
    assert (params.repetition_penalty, params.max_new_tokens) == (1.4, 999)


def test_none_given_means_all_given(tmp_path):
    settings = Settings(tmp_path)
    remember_param(settings, "temperature", 0.1)
    params = SamplingParams()
    assert remembered_params(settings, params, None) == [] and params == SamplingParams()


def test_bad_remembered_values_are_ignored(tmp_path):
    (tmp_path / "settings.json").write_text(
        json.dumps(
            {
                SAMPLING_KEY: {
                    "temperature": 9.0,
                    "top_k": 2.5,
                    "top_p": "0.5",
                    "repetition_penalty": True,
                    "max_new_tokens": 64,
                }
            }
        )
    )
    params = SamplingParams()
    assert remembered_params(Settings(tmp_path), params, frozenset()) == ["max_new_tokens"]
    assert params == SamplingParams(max_new_tokens=64)


def test_forget_gives_the_defaults(tmp_path):
    settings = Settings(tmp_path)
    remember_param(settings, "temperature", 0.1)
    assert forget_params(settings) == SamplingParams()
    params = SamplingParams(temperature=1.0)
    assert remembered_params(Settings(tmp_path), params, frozenset()) == []


def test_cli_flags_given_explicitly():
    assert given_params([]) == frozenset()
    assert given_params(["--temperature", "0.8", "--top_k", "50"]) == {"temperature", "top_k"}
    assert given_params(["--greedy", "--max_new_tokens", "9"]) == {"temperature", "max_new_tokens"}
