"""The inspector's branch tree and token pieces (pure Python), and a branch continued from
ids on the reference fixture against the plain full forward."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from swamla_tui.chat.token_tree import (
    Alternative,
    InspectError,
    ReplyTree,
    Step,
    alternatives,
    clip_pieces,
    fmt_prob,
    prob_bin,
    reply_text,
    token_pieces,
)
from tests.support.fakes import fake_record as rec


def test_alternatives_sampling_first_then_raw():
    s = Step.of(
        rec(7, 0.5, top=[(7, 0.5), (8, 0.3), (9, 0.2)], raw_top=[(8, 0.4), (7, 0.3), (3, 0.1)])
    )
    alts = alternatives(s, 4)
    assert [a.token for a in alts] == [7, 8, 9, 3]
    # approx objects in place of the floats: the dataclass equality compares them field by field
    assert alts[0] == Alternative(7, pytest.approx(0.5), pytest.approx(0.3))  # type: ignore[arg-type]
    assert alts[2].raw_prob is None  # 9 is not among the raw top
    assert alts[3].prob == 0.0  # 3 is outside the sampling distribution's recorded top


def test_greedy_alternatives_come_from_the_raw_distribution():
    s = Step.of(rec(5, 1.0, top=[(5, 1.0)], raw_top=[(5, 0.6), (1, 0.3), (2, 0.1)]))
    alts = alternatives(s)
    assert [a.token for a in alts] == [5, 1, 2]
    assert [a.prob for a in alts] == [pytest.approx(1.0), 0.0, 0.0]


def test_the_drawn_token_keeps_its_model_probability_outside_the_raw_top():
    """A repetition penalty can lift a token into the sampling top while the raw top-k
    misses it: its raw probability is still recorded on the step, so it is shown."""
    s = replace(
        Step.of(rec(9, 0.6, top=[(9, 0.6), (8, 0.4)], raw_top=[(8, 0.7), (3, 0.2)])),
        raw_logprob=math.log(0.05),
    )
    alts = alternatives(s, 3)
    assert [a.token for a in alts] == [9, 8, 3]
    assert alts[0].raw_prob == pytest.approx(0.05)
    assert alts[0].prob == pytest.approx(0.6)


def test_prob_bins_and_format():
    assert [prob_bin(p) for p in (0.0, 0.09, 0.1, 0.3, 0.6, 0.95, 1.0)] == [0, 0, 1, 2, 3, 4, 4]
    assert prob_bin(math.nan) == 4
    assert fmt_prob(0.4234) == "42.3%" and fmt_prob(0.0001) == "<0.1%" and fmt_prob(None) == "—"


def _tree() -> ReplyTree:
    top = [(10, 0.6), (20, 0.3), (30, 0.1)]
    records = [rec(t, 0.6, top=[(t, 0.6), (20, 0.3), (30, 0.1)], raw_top=top) for t in (1, 2, 3, 4)]
    return ReplyTree("You: hi\nAssistant:", ["\nYou:"], [1, 2, 3, 4], records, " abcd", note="")


def test_fork_keeps_the_prefix_and_undo_returns_to_the_parent():
    tree = _tree()
    root = tree.current
    child = tree.fork(2, 30)
    assert tree.current is child and child.parent is root and child.fork == 2
    assert child.tokens == [1, 2, 30]
    assert child.steps[:2] == root.steps[:2]
    assert child.steps[2].token == 30 and child.steps[2].prob == pytest.approx(0.1)
    assert child.steps[2].raw_prob == pytest.approx(0.1)
    assert child.steps[2].entropy == root.steps[2].entropy
    tree.complete(
        [40, 50],
        [rec(40, 0.9), rec(50, 0.2, top=[(50, 0.2), (20, 0.1)])],
        " ab!xy",
        note="max tokens reached",
    )
    assert child.tokens == [1, 2, 30, 40, 50] and len(child.steps) == 5
    assert child.raw == " ab!xy" and child.note == "max tokens reached"
    assert tree.depth == 1
    grandchild = tree.fork(4, 20)
    assert grandchild.tokens == [1, 2, 30, 40, 20] and tree.depth == 2
    assert tree.undo() is child and tree.undo() is root and tree.undo() is None
    assert root.raw == " abcd" and root.tokens == [1, 2, 3, 4]  # untouched
    assert root.children == [child] and child.children == [grandchild]


def test_fork_refuses_what_was_not_offered():
    tree = _tree()
    with pytest.raises(InspectError, match="no token 9"):
        tree.fork(8, 10)
    with pytest.raises(InspectError, match="not an alternative"):
        tree.fork(0, 999)
    assert tree.current is tree.root


def test_abandon_drops_a_failed_branch():
    tree = _tree()
    tree.fork(1, 20)
    assert tree.abandon() is tree.root and tree.root.children == []
    with pytest.raises(InspectError):
        tree.abandon()


def test_mismatched_records_are_an_error():
    with pytest.raises(InspectError, match="2 tokens but 1 records"):
        ReplyTree("p", [], [1, 2], [rec(1, 0.5)], "x")


def test_token_pieces_hold_back_incomplete_characters():
    table = {1: b" h", 2: b"\xe2\x82", 3: b"\xac", 4: b"!", 9: b""}

    def decode(ids):
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")

    assert token_pieces(decode, [1, 2, 3, 4, 9], eos=9) == [" h", "", "€", "!", ""]
    long = [1, 4] * 10
    assert "".join(token_pieces(decode, long)) == decode(long)


def test_reply_text_and_clip():
    pieces = [" Hi", " there", "\nYo", "u:", " more"]
    text, hit = reply_text(pieces, ["\nYou:"])
    assert text == " Hi there" and hit
    shown = text.strip()
    start = text.find(shown)
    clipped = clip_pieces(pieces, start, start + len(shown))
    assert clipped == ["Hi", " there", "", "", ""]
    assert "".join(clipped) == shown


def test_branch_from_ids_matches_the_full_forward(fixture_lm):
    """A branch continues from the recorded ids (prefix_ids): its first continuation
    token's raw log-probability equals the full forward over prompt + prefix + alt."""
    import torch

    from swamla_tui.base.params import SamplingParams

    prompt = "You: Hello there, how are you today?\nAssistant:"
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=8)
    s = fixture_lm.stream(prompt, params, logprobs=5)
    raw = "".join(s)
    tree = ReplyTree(prompt, (), s.token_ids, s.token_logprobs, raw)
    alt = alternatives(tree.current.steps[3])[2].token
    branch = tree.fork(3, alt)
    cont = fixture_lm.stream(
        prompt, params.copy(max_new_tokens=4), logprobs=5, prefix_ids=branch.tokens
    )
    cont_text = "".join(cont)
    tree.complete(cont.token_ids, cont.token_logprobs, "")
    assert branch.tokens[:4] == s.token_ids[:3] + [alt] and len(branch.tokens) == 8
    ids = fixture_lm.encode(prompt) + branch.tokens
    full = torch.log_softmax(fixture_lm.logits(torch.tensor([ids]))[0], dim=-1)
    n = len(fixture_lm.encode(prompt))
    for t in range(4, 8):
        want = float(full[n - 1 + t, ids[n + t]])
        assert branch.steps[t].raw_logprob == pytest.approx(want, abs=1e-4)
        assert ids[n + t] == int(full[n - 1 + t].argmax())  # greedy continuation
    pieces = token_pieces(fixture_lm.decode, branch.tokens, fixture_lm.eos_id)
    assert "".join(pieces[4:]) == cont_text
    assert "".join(pieces) == fixture_lm.decode(branch.tokens)
