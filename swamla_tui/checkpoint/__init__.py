"""Checkpoint files: pickle safety (`safety`), archive checks (`archive`), weight layout
and value checks (`tensors`) and source resolution (`sources`).

`swamla_tui.checkpoint.reader` composes these into `read_checkpoint` and `unpack`.
"""
