"""The benchmark's CPU line (bench/cpu.py): model name and instruction sets from cpuinfo."""

from __future__ import annotations

from swamla_tui.bench.cpu import cpu_info, cpu_line


def test_cpu_info_reads_the_model_and_the_extensions_that_matter(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(
        "processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse2 avx2 avx512f "
        "avx512_bf16 amx_int8\n\nprocessor\t: 1\nmodel name\t: Some CPU 9000\n"
    )
    assert cpu_info(str(f)) == ("Some CPU 9000", ["AVX2", "AVX-512", "AVX512-BF16", "AMX-INT8"])
    f.write_text("model name\t: Old CPU\nflags\t\t: fpu sse2 avx\n")
    assert cpu_info(str(f)) == ("Old CPU", [])


def test_cpu_line_without_cpuinfo_still_names_the_machine(tmp_path):
    name, isa = cpu_info(str(tmp_path / "missing"))
    assert name and isa == []
    assert "torch kernels" in cpu_line()
