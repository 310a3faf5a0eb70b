"""The core never imports textual; the package root never imports torch (fast first paint)."""

from __future__ import annotations

from tests.helpers import assert_imports_leave_out

CORE = [
    "swamla_tui",
    "swamla_tui.errors",
    "swamla_tui.params",
    "swamla_tui.loaded",
    "swamla_tui.engine.generate",
    "swamla_tui.engine.stream",
    "swamla_tui.checkpoint",
    "swamla_tui.tokenizer",
    "swamla_tui.commands",
    "swamla_tui.conversation",
    "swamla_tui.transcript",
    "swamla_tui.session",
    "swamla_tui.inspect_tree",
    "swamla_tui.batch",
    "swamla_tui.headless",
    "swamla_tui.protocols",
    "swamla_tui.paths",
    "swamla_tui.export",
    "swamla_tui.prompts_file",
    "swamla_tui.model",
    "swamla_tui.ui.options",
]


PURE = [
    "swamla_tui.commands",
    "swamla_tui.inspect_tree",
    "swamla_tui.conversation",
    "swamla_tui.prompts_file",
    "swamla_tui.export",
    "swamla_tui.params",
    "swamla_tui.errors",
    "swamla_tui.session",
    "swamla_tui.transcript",
    "swamla_tui.batch",
    "swamla_tui.headless",
    "swamla_tui.protocols",
    "swamla_tui.paths",
    "swamla_tui.cli",
]


def test_core_does_not_import_textual():
    lazy = "swamla_tui.load, swamla_tui.SamplingParams, swamla_tui.SwamlaError"
    assert_imports_leave_out(CORE, ("textual",), then=lazy)


def test_package_root_does_not_import_torch():
    heavy = ("torch", "transformers", "textual", "tokenizers", "huggingface_hub")
    assert_imports_leave_out([], heavy, then="assert swamla_tui.__version__")


def test_pure_modules_do_not_import_torch():
    assert_imports_leave_out(PURE, ("torch",))
