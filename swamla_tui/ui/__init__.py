"""Textual user interface. Nothing here imports torch or swamla_tui.runtime.load at import time."""
