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
    from .errors import SwamlaError
    from .loaded import load
    from .params import SamplingParams


def __getattr__(name: str) -> Any:
    if name == "load":
        from .loaded import load

        return load
    if name == "SamplingParams":
        from .params import SamplingParams

        return SamplingParams
    if name == "SwamlaError":
        from .errors import SwamlaError

        return SwamlaError
    raise AttributeError(name)
