"""What the model sees of the conversation (issue 12 §1) and the ChatML format (issue 9 §4).

Both real models at their default settings: the demo (256-token window) and the reference
fixture with the test tokenizer (128-token window). With ``max_new_tokens`` (256) as large
as the window, the old budget (window - max_new_tokens) left no room for any history.
"""

from __future__ import annotations

import threading
from typing import cast

import pytest

import swamla_tui
from swamla_tui.base.params import SamplingParams
from swamla_tui.chat.conversation import Conversation
from swamla_tui.chat.session import (
    ChatSession,
    context_usage,
    count_noun,
    dropped_notice,
    plan_turn,
    reply_reserve,
    truncated_notice,
)
from swamla_tui.chat.template import (
    CHATML,
    PLAIN,
    FormattedModel,
    chat_format_of,
    detect_chat_format,
    with_chat_format,
)
from swamla_tui.chat.transcript import TranscriptStore
from swamla_tui.demo import DEMO_DIR
from tests.support.fakes import Outcome
from tests.support.helpers import FIXTURE_CKPT, make_chatml_tokenizer


@pytest.fixture(scope="module")
def demo_lm():
    return swamla_tui.load(DEMO_DIR)


@pytest.mark.parametrize(
    ("window", "max_new", "reserve"),
    [(256, 256, 64), (128, 128, 64), (2048, 256, 256), (2048, 4096, 512), (64, 64, 32),
     (256, 10, 10), (2, 256, 1)],
)  # fmt: skip
def test_reply_reserve_rule(window, max_new, reserve):
    assert reply_reserve(window, max_new) == reserve
    assert 0 < reply_reserve(window, max_new) < window or window <= 2


def second_prompt(lm, chat_format=PLAIN, reply_tokens: int = 24) -> tuple[str, int]:
    """The prompt of a second message after one real exchange, at the default settings."""
    params = SamplingParams()  # max_new_tokens 256: the window or more for both models
    assert params.max_new_tokens >= lm.max_length
    conv = Conversation(chat_format=chat_format)
    first = plan_turn(
        conv.copy(),
        "What is a list?",
        lambda t: len(lm.encode(t)),
        max_length=lm.max_length,
        max_new_tokens=params.max_new_tokens,
    )
    reply = lm.generate(first.prompt, max_new_tokens=reply_tokens, temperature=0.0)
    conv.add_turn("What is a list?", reply)
    plan = plan_turn(
        conv,
        "And a tuple?",
        lambda t: len(lm.encode(t)),
        max_length=lm.max_length,
        max_new_tokens=params.max_new_tokens,
    )
    return plan.prompt, plan.dropped


def test_demo_model_second_message_carries_the_first_exchange(demo_lm):
    assert demo_lm.max_length == 256
    prompt, dropped = second_prompt(demo_lm)
    assert dropped == 0
    assert prompt.startswith("You: What is a list?\nAssistant: ")
    assert prompt.endswith("You: And a tuple?\nAssistant:")
    assert len(demo_lm.encode(prompt)) <= 256 - reply_reserve(256, 256)


def test_fixture_model_second_message_carries_the_first_exchange(fixture_lm):
    assert fixture_lm.max_length == 128
    prompt, dropped = second_prompt(fixture_lm)
    assert dropped == 0
    assert prompt.startswith("You: What is a list?\nAssistant:")
    assert prompt.endswith("You: And a tuple?\nAssistant:")


def test_old_turns_leave_when_the_history_is_too_long(fixture_lm):
    conv = Conversation()
    for i in range(12):
        conv.add_turn(f"q{i}", f"a{i}")
    plan = plan_turn(
        conv, "last", lambda t: len(fixture_lm.encode(t)), max_length=128, max_new_tokens=256
    )
    assert plan.dropped > 0 and conv.context_start == plan.dropped
    assert len(fixture_lm.encode(plan.prompt)) <= 128 - 64
    assert plan.prompt.startswith(f"You: q{plan.dropped}\n")  # whole turns, newest kept
    assert "Assistant: a11\nYou: last\n" in plan.prompt
    usage = context_usage(
        conv, lambda t: len(fixture_lm.encode(t)), max_length=128, max_new_tokens=256
    )
    assert usage.turns_out >= plan.dropped and 0 < usage.tokens <= 64


def test_notices_say_turn_and_turns():
    assert dropped_notice(1) == (
        "The conversation outgrew the context: the oldest turn no longer reaches the model."
    )
    assert dropped_notice(3) == (
        "The conversation outgrew the context: the oldest 3 turns no longer reach the model."
    )
    assert (count_noun(1, "turn"), count_noun(2, "turn")) == ("1 turn", "2 turns")


def chars(text: str) -> int:
    return len(text)


def test_the_dropped_notice_counts_every_turn_out_as_the_gauge_does():
    """Issue 22 item 10: the notice said how many turns *this* message pushed out while the
    status bar counts all that are out; both now say the total."""
    conv = Conversation()
    for i in range(10):
        conv.add_turn(f"question {i} " + "x" * 20, f"answer {i} " + "y" * 20)
    conv.context_start = 4  # earlier messages pushed four out already
    plan = plan_turn(conv, "next " + "z" * 30, chars, max_length=200, max_new_tokens=50)
    assert 0 < plan.dropped < plan.context_start == conv.context_start
    usage = context_usage(conv, chars, max_length=200, max_new_tokens=50)
    assert usage.turns_out == plan.context_start  # what the bar shows
    assert plan.truncated_to is None and plan.prompt_tokens == len(plan.prompt)


def test_a_message_longer_than_the_context_says_how_much_is_kept():
    conv = Conversation()
    conv.add_turn("hi", "hello")
    plan = plan_turn(conv, "w" * 500, chars, max_length=128, max_new_tokens=32)
    assert conv.context_start == 1 and plan.prompt_tokens > 500
    assert plan.truncated_to == 128
    assert truncated_notice(plan.prompt_tokens, 128) == (
        f"The message is longer than the context ({plan.prompt_tokens:,} tokens): "
        "it was truncated to its last 128 tokens."
    )
    fits = plan_turn(Conversation(), "w" * 100, chars, max_length=128, max_new_tokens=32)
    assert fits.truncated_to is None  # over the budget, within the window: not cut


# -- ChatML ------------------------------------------------------------------------------


def test_chatml_prompt_turns_and_cut():
    conv = Conversation(system="Be brief.", chat_format=CHATML)
    conv.add_turn("hi", "hello there<|im_end|>\n<|im_start|>user\nmore")
    assert conv.turns[0].assistant == "hello there"
    assert conv.prompt_for("and you?") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello there<|im_end|>\n"
        "<|im_start|>user\nand you?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert CHATML.stop[0] == "<|im_end|>"
    assert conv.copy().chat_format is CHATML


def test_chatml_session_gets_the_default_system_prompt_unless_one_was_given(tmp_path):
    session = ChatSession(TranscriptStore(tmp_path / "t"))
    session.set_format(CHATML)
    assert session.conversation.system == "You are a helpful assistant."
    given = ChatSession(TranscriptStore(tmp_path / "t"), system="Talk like a pirate.")
    given.set_format(CHATML)
    assert given.conversation.system == "Talk like a pirate."
    plain = ChatSession(TranscriptStore(tmp_path / "t"))
    plain.set_format(PLAIN)
    assert plain.conversation.system is None


@pytest.fixture(scope="module")
def chatml_lm(tmp_path_factory):
    tok = make_chatml_tokenizer(tmp_path_factory.mktemp("chatml"))
    return swamla_tui.load(FIXTURE_CKPT, tokenizer=tok)


def test_chatml_is_detected_from_the_tokenizer(chatml_lm, fixture_lm):
    assert detect_chat_format(chatml_lm.encode) == "chatml"
    assert detect_chat_format(fixture_lm.encode) == "plain"
    wrapped = with_chat_format(chatml_lm, chatml=False, system=None)
    assert chat_format_of(wrapped) is CHATML and wrapped.origin == "tokenizer"
    assert wrapped.card()["chat format"] == "ChatML (from the tokenizer)"
    forced = with_chat_format(fixture_lm, chatml=True, system=None)
    assert chat_format_of(forced) is CHATML and forced.card()["chat format"].endswith("--chatml)")
    assert chat_format_of(with_chat_format(fixture_lm, chatml=False, system=None)) is PLAIN
    assert chat_format_of(fixture_lm) is PLAIN


def test_chatml_history_fitting_on_the_real_model(chatml_lm):
    prompt, dropped = second_prompt(chatml_lm, CHATML, reply_tokens=8)
    assert dropped == 0
    assert prompt.startswith("<|im_start|>user\nWhat is a list?<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.endswith("<|im_start|>user\nAnd a tuple?<|im_end|>\n<|im_start|>assistant\n")


class RecordingBatch:
    """A batch model that records the texts and stop strings it is given."""

    max_length = 128
    source = "rec.pt"
    notices: list[str] = []

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], tuple[str, ...]]] = []

    def encode(self, text: str) -> list[int]:
        return [1] * len(text.split())

    def card(self) -> dict[str, str]:
        return {"source": self.source}

    def generate_batch(self, texts, params=None, *, batch_size=None, stop=(), cancel=None):
        self.calls.append((list(texts), tuple(stop)))
        for i, text in enumerate(texts):
            if "BAD" in text:
                yield Outcome(i, text, "", 0, 0.0, "error", error="token id 999 is beyond it")
            else:
                yield Outcome(i, text, " answer", 1, 0.1, "stop")


def test_chatml_batch_prompts_are_one_turn_conversations():
    rec = RecordingBatch()
    lm = FormattedModel(rec, CHATML, "flag", None)  # type: ignore[arg-type]
    out = list(lm.generate_batch(["Name a fruit", "Name a colour"], stop=("X",)))
    texts, stops = rec.calls[0]
    assert texts[0] == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nName a fruit<|im_end|>\n<|im_start|>assistant\n"
    )
    assert stops == ("X", "<|im_end|>", "<|im_start|>")
    assert [o.prompt for o in out] == ["Name a fruit", "Name a colour"]  # the user's own
    assert [o.completion for o in out] == ["answer", "answer"]
    plain = FormattedModel(rec, PLAIN, "default", None)  # type: ignore[arg-type]
    list(plain.generate_batch(["raw"], cancel=threading.Event()))
    assert rec.calls[-1] == (["raw"], ())


def test_chatml_batch_keeps_why_a_row_failed():
    lm = FormattedModel(RecordingBatch(), CHATML, "flag", None)  # type: ignore[arg-type]
    # the fake's records carry `error`, which the `BatchOutcome` protocol does not declare
    ok, bad = cast("list[Outcome]", list(lm.generate_batch(["fine", "BAD one"])))
    assert (ok.finish_reason, ok.error) == ("stop", "")
    assert (bad.prompt, bad.finish_reason) == ("BAD one", "error")
    assert bad.error == "token id 999 is beyond it"


def test_chatml_batch_on_the_real_model_stops_at_im_end(chatml_lm):
    lm = FormattedModel(chatml_lm, CHATML, "flag", "Be brief.")
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    (result,) = list(lm.generate_batch(["hello"], params))
    expected_prompt = CHATML.single_prompt("hello", "Be brief.")
    direct = chatml_lm.generate(expected_prompt, max_new_tokens=12, temperature=0.0)
    assert result.prompt == "hello"
    assert result.completion == CHATML.cut_reply(direct)
