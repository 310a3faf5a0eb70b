"""Textual user interface. Nothing here imports torch or swamla_tui.loaded at import time."""
