"""The inspector panel's token labels: a token that is part of a character shows its
bytes and id instead of a bare replacement character."""

from __future__ import annotations

from swamla_tui.ui.chat.inspector import InspectorController
from swamla_tui.ui.widgets.token_details import piece_bytes, token_label


def test_byte_fallback_and_byte_level_pieces():
    assert piece_bytes("<0xE2>") == b"\xe2"
    assert piece_bytes("¡") == b"\xa1"  # byte-level BPE: printable Latin-1 stands for itself
    assert piece_bytes("âĢ") == b"\xe2\x80"  # U+0122 is the moved 0x80
    assert piece_bytes("Ġ") == b" "
    assert piece_bytes("a\u4e2d") is None and piece_bytes(None) is None


def test_labels():
    assert token_label(" hi", 5) == "' hi'"
    assert token_label("\ufffd", 226, "<0xE2>") == "<0xE2> #226"
    assert token_label("\ufffd", 300, "âĢ") == "<0xE2 0x80> #300"
    assert token_label("\ufffd", 7) == "<bytes> #7"


def test_partial_characters_of_the_test_tokenizer_are_told_apart(fixture_lm):
    """Every token of the test tokenizer that decodes to U+FFFD gets its own label, and
    the bytes in it are the tokenizer's own."""
    bad = [i for i in range(len(fixture_lm.tokenizer)) if "\ufffd" in fixture_lm.decode([i])]
    assert len(bad) > 100
    labels = [InspectorController._label(fixture_lm, i) for i in bad]
    assert len(set(labels)) == len(bad)
    assert all("\ufffd" not in label and label.startswith("<0x") for label in labels)
    first = labels[0].split(" #")[0].strip("<>").split()
    raw = bytes(int(b, 16) for b in first)
    assert fixture_lm.tokenizer.decode([bad[0]]) == raw.decode("utf-8", "replace")
