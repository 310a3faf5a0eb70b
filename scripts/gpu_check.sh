#!/usr/bin/env bash
# One-shot GPU check: parity tests on CUDA, then the benchmark. Figures go to $OUT (or ./gpu-out).
# Usage (on a machine with a CUDA GPU and torch installed):
#   SWAMLA_SHARED=/path/to/shared bash scripts/gpu_check.sh
set -uo pipefail
out=${OUT:-gpu-out}; mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 SWAMLA_TEST_DEVICE=cuda HF_HUB_OFFLINE=1
export SWAMLA_SHARED=${SWAMLA_SHARED:-$PWD/../shared}
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee "$out/env.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" -W ignore \
  tests/unit/test_engine.py tests/unit/test_stream.py ${GPU_EXTRA_TESTS:-} 2>&1 | tee "$out/parity.txt"
timeout 240 python3 -m swamla_tui.bench --device cuda --dtype bfloat16 --json "$out/bench_bf16.json" 2>&1 | tee "$out/bench.txt"
timeout 120 python3 -m swamla_tui.bench --device cuda --dtype bfloat16 --lengths 32 --skip recompute,alone \
  --batch 64 --batch-new 64 --json "$out/bench_b64.json" 2>&1 | tee -a "$out/bench.txt"
timeout 60 python3 scripts/profile_decode.py --device cuda --batch 1 64 2>&1 | tee "$out/profile.txt" | grep "==="
SWAMLA_COMPILE=1 timeout ${COMPILE_TIMEOUT:-150} python3 -m swamla_tui.bench --device cuda --dtype bfloat16 --lengths 32,512 \
  --skip recompute,alone --batch 64 --batch-new 64 --json "$out/bench_compile.json" 2>&1 | sed 's/^/[compile] /' | tee -a "$out/bench.txt"
