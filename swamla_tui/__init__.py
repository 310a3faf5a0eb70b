"""swamla-tui: run SWA-MLA checkpoints in a terminal.

The package root stays free of heavy imports (torch, transformers, textual) so that
`swamla-tui` can paint its first frame before the model stack is imported. `load` is
resolved lazily on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["load", "SamplingParams", "SwamlaError", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .base.errors import SwamlaError
    from .base.params import SamplingParams
    from .runtime.load import load


def __getattr__(name: str) -> Any:
    if name == "load":
        from .runtime.load import load

        return load
    if name == "SamplingParams":
        from .base.params import SamplingParams

        return SamplingParams
    if name == "SwamlaError":
        from .base.errors import SwamlaError

        return SwamlaError
    raise AttributeError(name)
