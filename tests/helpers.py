"""Shared test helpers: the reference fixture (read in place) and a test-built tokenizer."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SWAMLA_SHARED", ROOT.parent / "shared"))
# Parity tests run on this device; the GPU check script sets it to "cuda".
TEST_DEVICE = os.environ.get("SWAMLA_TEST_DEVICE", "cpu")
FIXTURE_DIR = SHARED / "fixtures" / "reference"
FIXTURE_CKPT = FIXTURE_DIR / "tiny_train.pt"
FIXTURE_EXPECTED = FIXTURE_DIR / "tiny_train.expected.pt"

requires_fixture = pytest.mark.skipif(
    not FIXTURE_CKPT.is_file(),
    reason=f"reference fixture not found at {FIXTURE_DIR} (../shared is absent in a user's clone; CI has it)",
)

_CORPUS = (
    "You: Hello there, how are you today?\nAssistant: I am fine, thank you. How can I help?\n"
    "You: What is a list in Python?\nAssistant: A list is an ordered, mutable sequence.\n"
    "The quick brown fox jumps over the lazy dog. Once upon a time, in a land far away, "
    "there lived a model that liked to talk about science and magic. "
    "Numbers 0123456789, punctuation: ;:!?()[]{}<>/\\|@#$%^&*-+=_~`'\" and unicode: é ü ß 日本 🙂\n"
)


@lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 20, trainer=trainer)
    return tok.to_str()


def make_test_tokenizer(folder: Path) -> Path:
    """Write a <=512-token byte-level BPE tokenizer (fits the fixture's vocab) into `folder`."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
    )
    fast.save_pretrained(str(folder))
    return folder
