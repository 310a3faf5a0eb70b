"""Keep freed memory for reuse (glibc): large temporaries stop costing page faults.

glibc's malloc serves a request above its mmap threshold (128 KiB, raised on the fly up to
32 MiB) with fresh pages from the kernel and hands them back on free. A prefill's
temporaries are tens to hundreds of MiB each (the MLP's [T, 2 x hidden] activations, the
attention's keys and values per head), so every prompt faulted all of them in again: on
the 262M model a 2,048-token prompt took 40,000-470,000 minor faults per prefill, and 0.2-1.2 s
of system time (none and 0.1-0.3 s once they were kept; 2-core Xeon, BENCHMARKS.md).
PyTorch allocates with posix_memalign, which asks a little more than the chunk it freed, so
the heap grows a few times before freed chunks coalesce and are reused. Threads get heaps
of their own, capped at 64 MiB (larger requests are mapped afresh whatever the threshold),
so every thread shares the main heap (one arena): the app decodes in a worker thread, and
its locking costs nothing next to a forward. Call it before threads start (the CLI does).

The price: memory freed after the largest prefill stays with the process (reused by the
next one) instead of going back to the system. `EngineOptions.reuse_memory` (default on,
`SWAMLA_REUSE_MEMORY=0` turns it off) decides; elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
LIMIT = 256 << 20  # requests up to this size come from (and go back to) the heap


def reuse_freed_memory(limit: int = LIMIT) -> bool:
    """Raise glibc's mmap and trim thresholds to `limit` bytes and keep one arena; False
    where that is not possible (not Linux, not glibc, or refused)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # musl and others have no mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = [mallopt(opt, v) for opt, v in
          ((_M_MMAP_THRESHOLD, limit), (_M_TRIM_THRESHOLD, limit), (_M_ARENA_MAX, 1))]  # fmt: skip
    return all(ok)
