"""The benchmark's prefill floor (bench/prefill.py) on a small model it builds itself."""

from __future__ import annotations

import torch

from swamla_tui.base.params import SamplingParams
from swamla_tui.bench.prefill import prefill_floor, run_prefill
from swamla_tui.bench.run import build_model, reference_config
from swamla_tui.engine.pool import CachePool


def test_time_to_first_token_is_printed_next_to_the_prefill_floor(capsys):
    cfg = reference_config(vocab=256, layers=3)
    cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.mlp_hidden = 64, 4, 4, 128
    cfg.kv_lora_rank, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim = 32, 16, 8, 16
    cfg.block_size = 128
    model = build_model(cfg, torch.device("cpu"), torch.float32, False)
    assert prefill_floor(model, 64, reps=1) > 0
    g = torch.Generator().manual_seed(0)
    out = run_prefill(model, CachePool(model, 128, graphs=False), SamplingParams(seed=0), [32, 500],
                      lambda n: torch.randint(0, 256, (n,), generator=g).tolist(), rounds=1)  # fmt: skip
    assert sorted(out) == ["prefill_128", "prefill_32"]  # capped at the context
    for fig in out.values():
        assert fig["ttft_s"] > 0 and fig["floor_s"] > 0
        assert fig["ratio"] == fig["floor_s"] / fig["ttft_s"]
    assert "prefill   128: time to first token" in capsys.readouterr().out
