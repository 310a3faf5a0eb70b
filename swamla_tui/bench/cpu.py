"""The CPU line every benchmark figure is printed under: a figure on a 2-core AVX2 host
and one on a host with AVX-512 and AMX says little until it names which it was."""

from __future__ import annotations

import os
import platform

import torch

# /proc/cpuinfo flag -> the name benchmark tables use, in the order they are printed
FEATURES = (
    ("avx2", "AVX2"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx512_bf16", "AVX512-BF16"),
    ("avx512_fp16", "AVX512-FP16"),
    ("amx_bf16", "AMX-BF16"),
    ("amx_int8", "AMX-INT8"),
)


def cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, list[str]]:
    """The CPU's model name and its instruction-set extensions that matter here."""
    name, flags = "", set[str]()
    try:
        with open(path) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
                if name and flags:
                    break
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), [
        label for flag, label in FEATURES if flag in flags
    ]


def cpu_line() -> str:
    """E.g. 'Intel(R) Xeon(R) Processor · AVX2, AVX-512, AMX-BF16 · torch kernels AVX512
    · 2 CPUs'."""
    name, isa = cpu_info()
    cap = torch.backends.cpu.get_cpu_capability()
    return f"{name} · {', '.join(isa) or 'no AVX2'} · torch kernels {cap} · {os.cpu_count()} CPUs"
