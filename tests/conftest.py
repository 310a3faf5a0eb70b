"""Test-wide settings: never touch the network, keep user folders out of tests, one torch
thread per test process, and markers by kind so a fast subset exists.

One thread: the suite runs one process per core (pytest-xdist, ``-n auto`` in pyproject);
torch's default of a thread per core in each of them made every matrix product fight the
other workers (measured: a 61-test decoding subset ran 10x faster with one thread on a busy
machine). The variable is set before anything imports torch, and child processes inherit it.
A test that measures threading sets its own count.

Markers (added here, so a new test file needs no decoration): ``pilot`` for tests that drive
the app, ``pty`` for the real-terminal tests, ``snapshot`` for SVG snapshots, ``subprocess``
for tests that start Python processes, and ``fast`` for everything else:
``python -m pytest -m fast`` is the quick loop while working.
"""

from __future__ import annotations

import inspect
import os

import pytest

os.environ["OMP_NUM_THREADS"] = os.environ.get("SWAMLA_TEST_THREADS", "1")
os.environ["MKL_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

_SLOW_KINDS = ("pilot", "pty", "snapshot", "subprocess")
# words in a test's source that say it starts a process (directly or through a helper)
_SPAWNS = (
    "subprocess",
    "sys.executable",
    "Popen",
    "pexpect",
    "multiprocessing",
    "run_script",
    "run_python",
    "run_limited",
    "_torchrun",
    "assert_imports_leave_out",
    "python_subprocess",
)


def _spawns_a_process(item: pytest.Item) -> bool:
    fn = getattr(item, "function", None)
    try:
        src = inspect.getsource(fn) if fn is not None else ""
    except (OSError, TypeError):
        return False
    return any(word in src for word in _SPAWNS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.as_posix()
        kinds = []
        if "/tests/functional/" in path:
            kinds.append("pty" if item.path.name == "test_cli_pty.py" else "pilot")
            if item.path.name.startswith("test_snapshots"):
                kinds.append("snapshot")
        if _spawns_a_process(item):
            kinds.append("subprocess")
        for kind in kinds or ["fast"]:
            item.add_marker(getattr(pytest.mark, kind))
        if "pty" in kinds or "subprocess" in kinds:
            # processes that time themselves, or use many cores, run on one worker in turn
            item.add_marker(pytest.mark.xdist_group("processes"))


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
