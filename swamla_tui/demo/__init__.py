"""The bundled demo model: a tiny SWA-MLA checkpoint and its tokenizer (see README.md).

Made by `scripts/train_demo.py`; load it with `swamla_tui.load(DEMO_DIR)`.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
DEMO_CHECKPOINT = DEMO_DIR / "checkpoint_demo.pt"

__all__ = ["DEMO_DIR", "DEMO_CHECKPOINT"]
