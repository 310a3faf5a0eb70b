"""`pasted_text`: what a paste leaves in an input (the `visible` rules are tested with
the hardening tests)."""

from __future__ import annotations

from swamla_tui.base.safe_text import pasted_text


def test_pasted_text_drops_controls_and_keeps_lines():
    raw = "\x1b]52;c;aGk=\x07hi\r\nthere\rnow\tx\x9b2J\x7f\x00"
    assert pasted_text(raw) == "]52;c;aGk=hi\nthere\nnow\tx2J"
    assert pasted_text("plain — text ✓") == "plain — text ✓"
