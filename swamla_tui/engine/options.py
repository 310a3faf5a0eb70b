"""Engine switches: one typed value passed down through `load(..., engine=...)`.

Environment variables remain as user-facing overrides, read here and nowhere else:
`SWAMLA_CUDA_GRAPHS=0` (decode eagerly on CUDA), `SWAMLA_COMPILE=1` (`torch.compile` the
captured decode step; `--compile` sets it), `SWAMLA_CPU_LAYOUT=0` (keep row-major CPU
weights), `SWAMLA_CONTINUOUS_BATCHING=0` (batch runs in static chunks), `SWAMLA_REUSE_MEMORY=0`
(freed memory goes back to the system at once). No torch import: the CLI builds options before the model stack loads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

_OFF = ("0", "false", "no", "off", "")
_ON = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class EngineOptions:
    """How the engine decodes (none of these change the tokens, only the speed).

    cuda_graphs: capture the one-token decode step as CUDA graphs (CUDA only).
    compile: `torch.compile` the captured step first (falls back to the plain graph).
    cpu_layout: on the CPU in float32, store tall/square weights column-major.
    continuous_batching: batch runs refill a finished row with the next queued prompt
    (`engine.continuous`); off: static chunks, each until its longest row ends.
    reuse_memory: on the CPU, keep freed memory for the next prefill's temporaries
    (`base.memory`: no page faults for them; the process keeps its peak memory).
    """

    cuda_graphs: bool = True
    compile: bool = False
    cpu_layout: bool = True
    continuous_batching: bool = True
    reuse_memory: bool = True

    @classmethod
    def from_env(
        cls, *, compile: bool | None = None, env: Mapping[str, str] | None = None
    ) -> EngineOptions:
        """The defaults with the user's environment overrides; `compile` (the CLI flag)
        wins over SWAMLA_COMPILE when given."""
        e = os.environ if env is None else env
        graphs = e.get("SWAMLA_CUDA_GRAPHS", "1").strip().lower() not in _OFF
        comp = e.get("SWAMLA_COMPILE", "0").strip().lower() in _ON
        layout = e.get("SWAMLA_CPU_LAYOUT", "1").strip().lower() not in _OFF
        cont = e.get("SWAMLA_CONTINUOUS_BATCHING", "1").strip().lower() not in _OFF
        reuse = e.get("SWAMLA_REUSE_MEMORY", "1").strip().lower() not in _OFF
        return cls(cuda_graphs=graphs, compile=comp if compile is None else compile,
                   cpu_layout=layout, continuous_batching=cont, reuse_memory=reuse)  # fmt: skip
