"""The core never imports textual; the package root never imports torch (fast first paint)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

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


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_core_does_not_import_textual():
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}:\n"
        "    importlib.import_module(name)\n"
        "import swamla_tui\n"
        "swamla_tui.load, swamla_tui.SamplingParams, swamla_tui.SwamlaError\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "assert not bad, bad[:5]\n"
        "print('ok')\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "ok"


def test_package_root_does_not_import_torch():
    code = (
        "import sys\n"
        "import swamla_tui\n"
        "heavy = [m for m in ('torch', 'transformers', 'textual', 'tokenizers', 'huggingface_hub') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert swamla_tui.__version__\n"
        "print('ok')\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "ok"


def test_pure_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import swamla_tui.commands, swamla_tui.conversation, swamla_tui.prompts_file\n"
        "import swamla_tui.export, swamla_tui.params, swamla_tui.errors\n"
        "import swamla_tui.session, swamla_tui.transcript, swamla_tui.batch\n"
        "import swamla_tui.inspect_tree\n"
        "import swamla_tui.headless, swamla_tui.protocols, swamla_tui.paths, swamla_tui.cli\n"
        "assert 'torch' not in sys.modules, 'torch imported by a pure module'\n"
        "print('ok')\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr[-3000:]
