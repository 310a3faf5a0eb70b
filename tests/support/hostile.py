"""Hostile inputs for the hardening tests, built in the test's temp folder, and a runner
that loads them in a subprocess under a memory limit.

Every builder writes a small file (at most a few MB) whose declared contents are large,
deep or malformed. `run_limited` runs a snippet in a fresh interpreter under `RLIMIT_AS`,
so a loader that allocates what a file declares fails the test instead of exhausting the
machine, and a crash (segfault) or hang shows as such.

The limit is set after torch is imported, at what the process has mapped by then plus
`BUDGET`: the import alone maps ~0.6 GB with the CPU build of torch and ~3 GB with the
CUDA build (its libraries are mapped even without a GPU), so a fixed limit set before the
import measured the torch build, and the CUDA build could not even be imported under it
(issue 26). Address space rather than resident memory because Linux enforces no RSS
limit, and a tensor that is allocated but not yet touched is still refused.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.support.helpers import ROOT

# What the snippet may map beyond its imports. The smallest declared allocation the tests
# must catch is ~1 GB (a (4e6, 64) float32 embedding); refusing a file takes a few MB.
BUDGET = 512 * 2**20
# Imported before the limit is set: what the snippet's code needs, not what it is testing.
PRELOAD = ("torch", "swamla_tui.runtime.load")

_CHILD = """
import resource, sys
{preload}
def _vm(field):
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith(field + ":"))
_base = _vm("VmSize")
_lim = _base + int(sys.argv[1])
_hard = resource.getrlimit(resource.RLIMIT_AS)[1]
if _hard != resource.RLIM_INFINITY:
    _lim = min(_lim, _hard)
resource.setrlimit(resource.RLIMIT_AS, (_lim, _lim))
import atexit
atexit.register(lambda: print(
    f"MEMORY: mapped {{_base >> 20}} MB after the imports, limit {{_lim >> 20}} MB, "
    f"peak {{_vm('VmPeak') >> 20}} MB", file=sys.stderr))
from swamla_tui.base.errors import SwamlaError
try:
{body}
except SwamlaError as e:
    print("SWAMLA_ERROR:", str(e))
    sys.exit(3)
print("DONE")
"""


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The SwamlaError message the snippet ended with ('' if none)."""
        for line in self.stdout.splitlines():
            if line.startswith("SWAMLA_ERROR: "):
                return line.removeprefix("SWAMLA_ERROR: ")
        return ""

    def assert_clean_error(self) -> str:
        """A one-line SwamlaError, no traceback, no crash; returns the message."""
        assert self.returncode == 3, (
            f"rc {self.returncode} (negative: killed by a signal)\n{self.stdout[-1500:]}"
            f"\n{self.stderr[-1500:]}"
        )
        assert "Traceback" not in self.stderr, self.stderr[-1500:]
        msg = self.error
        assert msg and "\n" not in msg
        return msg


def run_limited(
    body: str,
    *,
    timeout: float = 120,
    budget: int = BUDGET,
    preload: tuple[str, ...] = PRELOAD,
) -> Outcome:
    """Run `body` (statements, any indentation removed) in a subprocess that imports
    `preload`, then may map `budget` bytes more (RLIMIT_AS)."""
    lines = [ln for ln in body.strip("\n").splitlines()]
    indent = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    code = _CHILD.format(
        preload="\n".join(f"import {m}" for m in preload),
        body="\n".join("    " + ln[indent:] for ln in lines),
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-c", code, str(budget)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env=env,
    )
    return Outcome(r.returncode, r.stdout, r.stderr)


# ------------------------------------------------------------------------------ zip surgery
def zip_members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def write_zip(path: Path, members: list[tuple[str, bytes]], *, deflate_data: bool = False) -> None:
    """Write members in order; `deflate_data` compresses the tensor records (data/...)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            method = zipfile.ZIP_DEFLATED if deflate_data and "/data/" in name else 0
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)


def replace_pickle(path: Path, out: Path, new_pickle: bytes) -> None:
    """Copy a torch zip checkpoint with its data.pkl replaced."""
    members = [(n, new_pickle if n.endswith("/data.pkl") else d) for n, d in zip_members(path)]
    write_zip(out, members)


def data_pkl(path: Path) -> bytes:
    return next(d for n, d in zip_members(path) if n.endswith("/data.pkl"))


# ------------------------------------------------------------------------------ pickles
def deep_tuple_key_pickle(depth: int) -> bytes:
    """{((((),),)...): 1} nested `depth` deep, as protocol-2 opcodes (~depth bytes)."""
    return b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s."


def evil_global_pickle(marker: Path) -> bytes:
    """A protocol-2 pickle that would run `touch marker` if unpickled."""
    cmd = f"touch {marker}".encode()
    return b"\x80\x02cos\nsystem\nX" + len(cmd).to_bytes(4, "little") + cmd + b"\x85R."


def torch_zip(path: Path, obj: object, **kw: object) -> Path:
    torch.save(obj, path, **kw)  # type: ignore[arg-type]
    return path


def inflate_storage_numel(path: Path, out: Path, numel: int) -> None:
    """A zip checkpoint of one small tensor whose pickle declares `numel` elements."""
    pk = data_pkl(path)
    at = pk.index(b"cpu") + len(b"cpu")
    # the element count follows the location string: BININT1 (K) or BININT2 (M)
    i = min(j for j in (pk.find(b"K", at), pk.find(b"M", at)) if j >= 0)
    width = 2 if pk[i : i + 1] == b"K" else 3
    patched = pk[:i] + b"J" + numel.to_bytes(4, "little") + pk[i + width :]
    replace_pickle(path, out, patched)


def bomb_zip(path: Path, expanded_mb: int) -> None:
    """A zip checkpoint whose data.pkl is `expanded_mb` MB of NONE opcodes (deflated)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/version", "3\n")
        with zf.open("archive/data.pkl", "w", force_zip64=True) as fh:
            fh.write(b"\x80\x02")
            chunk = b"N" * 2**20
            for _ in range(expanded_mb):
                fh.write(chunk)
            fh.write(b".")


# ------------------------------------------------------------------------------ tokenizers
class PanicException(BaseException):
    """What pyo3 raises when Rust code panics: a BaseException, not an Exception."""


class PanickingTokenizer:
    """Wraps a tokenizer; encode and/or decode panic like a Rust tokenizer can."""

    def __init__(self, inner: object, *, encode: bool = False, decode: bool = False) -> None:
        self.inner = inner
        self.panic_encode = encode
        self.panic_decode = decode
        self.eos_token_id = getattr(inner, "eos_token_id", None)

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def encode(self, text: str, **kw: object) -> list[int]:
        if self.panic_encode:
            raise PanicException("called `Result::unwrap()` on an `Err` value: regex")
        return self.inner.encode(text, **kw)  # type: ignore[attr-defined, no-any-return]

    def decode(self, ids: list[int], **kw: object) -> str:
        if self.panic_decode:
            raise PanicException("called `Option::unwrap()` on a `None` value")
        return self.inner.decode(ids, **kw)  # type: ignore[attr-defined, no-any-return]


def remote_code_tokenizer(folder: Path, source: Path, marker: Path) -> Path:
    """A copy of a tokenizer folder whose config asks for code shipped in the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["auto_map"] = {"AutoTokenizer": ["evil_tok.EvilTokenizer", "evil_tok.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    (folder / "evil_tok.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import PreTrainedTokenizerFast as EvilTokenizer\n"
    )
    return folder


def pickle_bytes(obj: object, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    pickle.dump(obj, buf, protocol=protocol)
    return buf.getvalue()
