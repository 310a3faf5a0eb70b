"""base.memory: with freed memory kept, a second large temporary of the same size costs no
page faults (counted by the kernel, so the test does not depend on the machine's speed)."""

from __future__ import annotations

import platform
import resource
import sys

import pytest
import torch

from swamla_tui.base.memory import reuse_freed_memory
from swamla_tui.engine.options import EngineOptions

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _faults_of_a_fresh_64mib_tensor() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 << 20)  # 64 MiB, every page written
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del t
    return after - before


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_a_freed_prefill_sized_temporary_is_reused_without_page_faults():
    assert reuse_freed_memory()
    # posix_memalign asks a little more than the chunk it freed last time, so the heap grows
    # a few times before freed chunks coalesce; without the setting every one is mapped
    faults = [_faults_of_a_fresh_64mib_tensor() for _ in range(14)]
    assert max(faults[-3:]) < 500, faults  # 16,384 pages when mapped afresh


def test_the_option_and_its_override():
    assert EngineOptions().reuse_memory
    assert not EngineOptions.from_env(env={"SWAMLA_REUSE_MEMORY": "0"}).reuse_memory


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_a_worker_thread_reuses_them_too():
    """A thread's own heap is capped at 64 MiB: one shared arena lets the app's decoding
    worker reuse a 64 MiB temporary (a fresh process: arenas are assigned once)."""
    import subprocess

    code = (
        "import resource, threading, torch\n"
        "from swamla_tui.base.memory import reuse_freed_memory\n"
        "assert reuse_freed_memory()\n"
        "torch.set_num_threads(1)\n"
        "out = []\n"
        "def one():\n"
        "    b = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt\n"
        "    t = torch.ones(16 << 20)\n"
        "    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - b\n"
        "th = threading.Thread(target=lambda: out.extend(one() for _ in range(14)))\n"
        "th.start(); th.join(); print(max(out[-3:]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-500:]
    assert int(run.stdout.split()[-1]) < 500
