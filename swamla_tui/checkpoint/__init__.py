"""Checkpoint files: pickle safety (`safety`), archive checks (`archive`), weight layout
and value checks (`tensors`) and source resolution (`sources`).

`swamla_tui.checkpoint.reader` composes these into `read_checkpoint` and `unpack`.
"""


def looks_like_checkpoint(head: bytes) -> bool:
    """The first bytes of a file torch.save wrote: a zip archive, or (legacy format) a
    pickle of protocol 2+ (opcode PROTO). The CLI's quick check and `read_checkpoint` share
    this rule; it imports nothing, so the quick check stays fast."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"
