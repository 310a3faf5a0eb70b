"""Test-wide settings: never touch the network, keep user folders out of tests."""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _isolated_user_folders(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWAMLA_TUI_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.setenv("SWAMLA_TUI_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def test_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory):
    from tests.support.helpers import make_test_tokenizer

    return make_test_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def fixture_lm(test_tokenizer_dir):
    """The reference checkpoint loaded once with the test tokenizer (read-only use!)."""
    import swamla_tui
    from tests.support.helpers import FIXTURE_CKPT

    return swamla_tui.load(FIXTURE_CKPT, tokenizer=test_tokenizer_dir)


@pytest.fixture(scope="session")
def fixture_lm_b(test_tokenizer_dir):
    """Model B of the A/B tests: the reference checkpoint with seeded noise on its weights
    (same vocabulary and tokenizer as `fixture_lm`, other completions)."""
    import torch

    import swamla_tui
    from tests.support.helpers import FIXTURE_CKPT

    lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=test_tokenizer_dir)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in lm.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g).to(p.dtype))
    return lm
