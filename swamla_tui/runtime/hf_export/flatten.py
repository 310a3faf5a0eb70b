"""Copy the model package into an export folder as flat, self-contained modules.

transformers' `trust_remote_code` copies a folder's `modeling_*.py` and, recursively, the
files it imports as `from .name import ...`, all from the folder's top level: a subpackage
or a `..parent` import does not survive that copy. So every module the model package
needs (its own files, and whatever they import from elsewhere in `swamla_tui`, such as
`..base.errors`) is written as `swamla_<dotted_name>.py` (`model/config.py` ->
`swamla_model_config.py`, `model/__init__.py` -> `swamla_model.py`, `base/errors.py` ->
`swamla_base_errors.py`) with its relative imports rewritten to those flat names. The files
are found by walking the imports, so a layer kind added to `swamla_tui/model/` later is
exported with no change here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from ...base.errors import SwamlaError

PKG_ROOT = Path(__file__).resolve().parents[2]  # the swamla_tui folder
PKG_NAME = "swamla_tui"


class FlattenError(SwamlaError):
    """The model code uses an import form that cannot be flattened for remote code."""


@dataclass(frozen=True)
class SourceModule:
    dotted: str  # relative to swamla_tui: "model.config", "model" (a package), "errors"
    path: Path
    is_package: bool

    @property
    def flat(self) -> str:
        return "swamla_" + self.dotted.replace(".", "_")


def _module(dotted: str) -> SourceModule | None:
    base = PKG_ROOT.joinpath(*dotted.split("."))
    if (base / "__init__.py").is_file():
        return SourceModule(dotted, base / "__init__.py", True)
    if base.with_suffix(".py").is_file():
        return SourceModule(dotted, base.with_suffix(".py"), False)
    return None


def _target(mod: SourceModule, node: ast.ImportFrom) -> str | None:
    """The dotted name (relative to swamla_tui) an import refers to; None if outside it."""
    if node.level == 0:
        name = node.module or ""
        if name == PKG_NAME or name.startswith(PKG_NAME + "."):
            return name[len(PKG_NAME) + 1 :]
        return None
    parts = mod.dotted.split(".") if mod.is_package else mod.dotted.split(".")[:-1]
    up = node.level - 1
    if up > len(parts):
        raise FlattenError(f"{mod.path.name}: import goes above the {PKG_NAME} package")
    base = parts[: len(parts) - up]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(mod: SourceModule, tree: ast.Module) -> list[tuple[ast.ImportFrom, SourceModule]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == PKG_NAME or a.name.startswith(PKG_NAME + "."):
                    raise FlattenError(f"{mod.path.name}: 'import {a.name}' cannot be flattened")
        if not isinstance(node, ast.ImportFrom):
            continue
        dotted = _target(mod, node)
        if dotted is None:
            continue
        if not node.module or not dotted:
            raise FlattenError(
                f"{mod.path.name}: 'from {'.' * node.level} import ...' cannot be flattened: "
                "import from a named module instead"
            )
        target = _module(dotted)
        if target is None:
            raise FlattenError(f"{mod.path.name}: imports {dotted}, which is not a module file")
        out.append((node, target))
    return out


def _rewrite(source: str, edits: list[tuple[ast.ImportFrom, str]], name: str) -> str:
    """Replace each import statement by `from .<flat> import <same names>` in place."""
    lines = source.splitlines(keepends=True)
    for node, flat in sorted(edits, key=lambda e: e[0].lineno, reverse=True):
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        head, tail = lines[first][: node.col_offset], lines[last][node.end_col_offset or 0 :]
        if head.strip() or tail.split("#", 1)[0].strip():
            raise FlattenError(f"{name}: line {node.lineno}: one import per line, please")
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        lines[first : last + 1] = [f"{head}from .{flat} import {names}{tail}"]
    return "".join(lines)


def model_modules(package: str = "model") -> list[SourceModule]:
    """Every module file of `swamla_tui.<package>` and, transitively, what they import."""
    start = PKG_ROOT / package
    seen: dict[str, SourceModule] = {}
    queue: list[SourceModule] = []
    for path in sorted(start.rglob("*.py")):
        rel = path.relative_to(PKG_ROOT).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        m = _module(".".join(parts))
        if m is not None:
            queue.append(m)
    while queue:
        m = queue.pop()
        if m.dotted in seen:
            continue
        seen[m.dotted] = m
        tree = ast.parse(m.path.read_text(encoding="utf-8"), filename=str(m.path))
        queue.extend(t for _, t in _imports(m, tree) if t.dotted not in seen)
    return sorted(seen.values(), key=lambda m: m.dotted)


def flatten_into(folder: Path, package: str = "model") -> list[str]:
    """Write the flat copies of the model code into `folder`; returns the file names."""
    modules = model_modules(package)
    flats = [m.flat for m in modules]
    if len(set(flats)) != len(flats):
        raise FlattenError(f"two modules of {PKG_NAME}.{package} flatten to the same file name")
    written = []
    for m in modules:
        text = m.path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(m.path))
        edits = [(node, t.flat) for node, t in _imports(m, tree)]
        out = _rewrite(text, edits, m.path.name)
        header = f"# Copied from {PKG_NAME}/{m.path.relative_to(PKG_ROOT).as_posix()} at export.\n"
        (folder / f"{m.flat}.py").write_text(header + out, encoding="utf-8")
        written.append(f"{m.flat}.py")
    return written
