"""Issue 21: a fuzzer of the checkpoint reader. Mutations of real checkpoints (zip header
fields, pickle bytes and length fields, storage records, truncation, byte flips) are read
in one subprocess under RLIMIT_AS with a per-case alarm: each ends in a load or a one-line
`SwamlaError`, never a signal, a hang, a traceback or another exception.

CI runs `SWAMLA_FUZZ_CASES` cases (default 300) from `SWAMLA_FUZZ_SEED` (default 0); by
hand, e.g. `SWAMLA_FUZZ_CASES=20000 SWAMLA_FUZZ_SEED=7 python -m pytest -n 0
tests/unit/test_checkpoint_fuzz.py` (the timeout grows with the count).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import torch

from tests.support.helpers import FIXTURE_CKPT
from tests.support.hostile import run_limited, write_zip, zip_members

CASES = int(os.environ.get("SWAMLA_FUZZ_CASES", "300"))
SEED = int(os.environ.get("SWAMLA_FUZZ_SEED", "0"))

_BODY = """
import random, signal, struct, traceback, zipfile
from pathlib import Path
from swamla_tui.checkpoint.reader import read_checkpoint
from tests.support.hostile_ckpt import rezip, torch_members

class Hang(BaseException):
    pass

def _alarm(*_):
    raise Hang()

signal.signal(signal.SIGALRM, _alarm)
work = Path({work!r})
bases = [Path(p) for p in {bases!r}]
heavy = Path({heavy!r})
SIGS = [b"PK\\x03\\x04", b"PK\\x01\\x02", b"PK\\x05\\x06", b"PK\\x06\\x06", b"PK\\x06\\x07"]

def field_mutation(rng, data):
    heads = [i for s in SIGS for i in range(len(data)) if data.startswith(s, i)]
    at = rng.choice(heads) + rng.randrange(4, 46)
    width = rng.choice([1, 2, 4, 8])
    old = int.from_bytes(data[at:at + width].ljust(width, b"\\0"), "little")
    new = rng.choice([0, 1, 2**(8 * width) - 1, 2**(8 * width - 1), old + 1, max(old - 1, 0),
                      old + rng.randrange(1, 4096), rng.getrandbits(8 * width)]) % 2**(8 * width)
    return data[:at] + new.to_bytes(width, "little") + data[at + width:]

def pickle_mutation(rng, pk):
    pk = bytearray(pk)
    kind = rng.randrange(6)
    if kind == 0:  # byte flips
        for _ in range(rng.randint(1, 4)):
            pk[rng.randrange(len(pk))] = rng.randrange(256)
    elif kind == 1:  # insert opcodes/bytes
        at = rng.randrange(len(pk))
        pk[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif kind == 2:  # delete a range
        at = rng.randrange(len(pk))
        del pk[at:at + rng.randint(1, 16)]
    elif kind == 3:  # a length or count field made large
        spots = [i for i, b in enumerate(pk) if b in b"XJBTMK\\x8a\\x8d\\x8e\\x8c\\x95"]
        at = rng.choice(spots) + 1
        width = rng.choice([1, 2, 4, 8])
        pk[at:at + width] = rng.choice([2**31 - 1, 2**32 - 1, 2**30, 10**9, 2**63 - 1,
                                        rng.getrandbits(32)]).to_bytes(8, "little")[:width]
    elif kind == 4:  # duplicate a slice (repeated structures, memo puts)
        a = rng.randrange(len(pk))
        b = min(len(pk), a + rng.randint(1, 64))
        pk[a:a] = pk[a:b] * rng.randint(1, 50)
    else:  # swap two opcodes' bytes
        a, b = rng.randrange(len(pk)), rng.randrange(len(pk))
        pk[a], pk[b] = pk[b], pk[a]
    return bytes(pk)

def mutate(rng, path):
    data = path.read_bytes()
    is_zip = data[:4] == b"PK\\x03\\x04"
    kind = rng.randrange(5) if is_zip else rng.choice([2, 3])
    if kind == 0:
        return "field", field_mutation(rng, data)
    if kind == 1:
        members = torch_members(path)
        name = next(n for n, _ in members if n.endswith("/data.pkl"))
        pk = pickle_mutation(rng, dict(members)[name])
        return "pickle", rezip([(n, pk if n == name else d) for n, d in members])
    if kind == 2:
        data = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return "flip", bytes(data)
    if kind == 3:
        return "truncate", data[:rng.randrange(1, len(data))]
    members = torch_members(path)
    recs = [n for n, _ in members if "/data/" in n]
    name = rng.choice(recs)
    d = dict(members)[name]
    d = d[:rng.randrange(len(d))] if rng.random() < 0.5 else d + bytes(rng.randrange(1, 64))
    return "record", rezip([(n, d if n == name else v) for n, v in members])

counts = {{"loaded": 0, "refused": 0, "bad": 0}}
for case in range({seed}, {seed} + {cases}):
    rng = random.Random(case)
    base = heavy if case % 10 == 9 else bases[case % len(bases)]
    kind, data = mutate(rng, base)
    p = work / f"case{{case % 4}}.pt"
    p.write_bytes(data)
    signal.alarm(30)
    try:
        read_checkpoint(p)
        counts["loaded"] += 1
    except SwamlaError as e:
        msg = str(e)
        if not msg or "\\n" in msg:
            counts["bad"] += 1
            print("BAD", case, kind, base.name, "message not one line:", repr(msg[:300]))
        else:
            counts["refused"] += 1
    except Hang:
        counts["bad"] += 1
        print("HANG", case, kind, base.name)
    except BaseException as e:
        counts["bad"] += 1
        print("BAD", case, kind, base.name, type(e).__name__, str(e)[:300])
        print("".join(traceback.format_exc()).replace("Traceback", "TB")[-1500:])
    finally:
        signal.alarm(0)
print("FUZZ", counts)
"""


def _bases(tmp_path):
    obj = {
        "model": {
            "w": torch.randn(4, 4, generator=torch.Generator().manual_seed(0)),
            "b": torch.arange(6, dtype=torch.int64)[2:],
            "p": torch.nn.Parameter(torch.ones(3)),
        },
        "step": 7,
        "val_loss": np.float64(1.5),
        "config": {"a": [1, 2.5, "x", None, True], "t": (1, 2), "s": {3}},
    }
    out = []
    for name, kw in [("p2.pt", {}), ("p4.pt", {"pickle_protocol": 4}),
                     ("legacy.pt", {"_use_new_zipfile_serialization": False})]:  # fmt: skip
        p = tmp_path / name
        torch.save(obj, p, **kw)  # type: ignore[arg-type]
        out.append(p)
    deflated = tmp_path / "deflated.pt"
    write_zip(deflated, zip_members(out[0]), deflate_data=True)
    with zipfile.ZipFile(deflated) as zf:
        assert any(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    return [*out, deflated]


def test_mutated_checkpoints_end_in_a_load_or_one_clean_line(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    bases = _bases(tmp_path)
    body = _BODY.format(
        work=str(work), bases=[str(b) for b in bases], heavy=str(FIXTURE_CKPT),
        seed=SEED, cases=CASES,
    )  # fmt: skip
    out = run_limited(body, timeout=max(240, CASES * 2))
    report = out.stdout[-4000:] + out.stderr[-3000:]
    assert out.returncode == 0, report  # negative: a signal killed it
    assert "Traceback" not in out.stderr, report
    assert not [ln for ln in out.stdout.splitlines() if ln.startswith(("BAD", "HANG"))], report
    summary = next(ln for ln in out.stdout.splitlines() if ln.startswith("FUZZ"))
    print(summary)
    counts = eval(summary.removeprefix("FUZZ "))  # noqa: S307 - our own child's dict repr
    assert counts["loaded"] + counts["refused"] == CASES and counts["bad"] == 0, summary
    assert counts["refused"] > CASES // 4, summary  # the mutations do reach the checks
