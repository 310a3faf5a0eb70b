"""Shared test helpers: the fixtures shipped in tests/fixtures/ and a test-built tokenizer."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
# Parity tests run on this device; the GPU check script sets it to "cuda".
TEST_DEVICE = os.environ.get("SWAMLA_TEST_DEVICE", "cpu")
FIXTURE_DIR = FIXTURES / "reference"
FIXTURE_CKPT = FIXTURE_DIR / "tiny_train.pt"
FIXTURE_EXPECTED = FIXTURE_DIR / "tiny_train.expected.pt"

V2_DIR = FIXTURES / "v2"
V2_CKPT = V2_DIR / "deltanet_moe_train.pt"
V2_EXPECTED = V2_DIR / "deltanet_moe_train.expected.pt"
V2_TOKENIZER = V2_DIR / "tok384"


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


def make_chatml_tokenizer(folder: Path) -> Path:
    """The test tokenizer with ``<|im_start|>`` / ``<|im_end|>`` added as special tokens
    (as instruction-tuned checkpoints ship them); ids stay below the fixture's vocab."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_str(_tokenizer_json())
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    fast.save_pretrained(str(folder))
    return folder
