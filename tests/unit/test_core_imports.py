"""The core never imports textual; the package root never imports torch (fast first paint)."""

from __future__ import annotations

from tests.support.helpers import assert_imports_leave_out

CORE = [
    "swamla_tui",
    "swamla_tui.base.errors",
    "swamla_tui.base.params",
    "swamla_tui.runtime.load",
    "swamla_tui.engine.decode_loop",
    "swamla_tui.engine.stream",
    "swamla_tui.checkpoint.reader",
    "swamla_tui.runtime.tokenizer",
    "swamla_tui.chat.commands.parse",
    "swamla_tui.chat.conversation",
    "swamla_tui.chat.transcript",
    "swamla_tui.chat.session",
    "swamla_tui.chat.token_tree",
    "swamla_tui.batch.job",
    "swamla_tui.headless.run",
    "swamla_tui.protocols",
    "swamla_tui.base.paths",
    "swamla_tui.batch.results",
    "swamla_tui.batch.prompts",
    "swamla_tui.model",
    "swamla_tui.ui.options",
]


PURE = [
    "swamla_tui.chat.commands.parse",
    "swamla_tui.chat.token_tree",
    "swamla_tui.chat.conversation",
    "swamla_tui.batch.prompts",
    "swamla_tui.batch.results",
    "swamla_tui.base.params",
    "swamla_tui.base.errors",
    "swamla_tui.chat.session",
    "swamla_tui.chat.transcript",
    "swamla_tui.batch.job",
    "swamla_tui.headless.run",
    "swamla_tui.protocols",
    "swamla_tui.base.paths",
    "swamla_tui.cli.main",
]


def test_core_does_not_import_textual():
    lazy = "swamla_tui.load, swamla_tui.SamplingParams, swamla_tui.SwamlaError"
    assert_imports_leave_out(CORE, ("textual",), then=lazy)


def test_package_root_does_not_import_torch():
    heavy = ("torch", "transformers", "textual", "tokenizers", "huggingface_hub")
    assert_imports_leave_out([], heavy, then="assert swamla_tui.__version__")


def test_pure_modules_do_not_import_torch():
    assert_imports_leave_out(PURE, ("torch",))
