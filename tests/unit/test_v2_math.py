"""The v2 building blocks against direct computations: the gated delta rule in its three
forms, the router, the two expert paths, Engram's token compression."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from swamla_tui.model.deltanet import delta_rule_chunked, delta_rule_step, l2norm
from swamla_tui.model.moe import Experts, route
from swamla_tui.model.token_map import normalise_token, token_mapping
from tests.support.helpers import ref_route


def _row(bias: torch.Tensor | None, e: int) -> torch.Tensor:
    assert bias is not None, "built with bias=True but it has none"
    return bias[e]


def _inputs(b: int, t: int, h: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, d, generator=g)
    k = l2norm(torch.randn(b, t, h, d, generator=g))
    v = torch.randn(b, t, h, d, generator=g)
    gate = F.logsigmoid(2 * torch.randn(b, t, h, generator=g))
    beta = torch.rand(b, t, h, generator=g)
    return q, k, v, gate, beta


def _direct(q, k, v, g, beta, scale, s0=None):
    """S' = e^g S; δ = β (v - S'ᵀ k); S = S' + k δᵀ; o = Sᵀ (s q), per (row, head)."""
    b, t, h, d = q.shape
    o = torch.zeros_like(v)
    states = torch.zeros(b, h, d, d) if s0 is None else s0.clone()
    for bi in range(b):
        for hi in range(h):
            s = states[bi, hi]
            for i in range(t):
                s = torch.exp(g[bi, i, hi]) * s
                delta = beta[bi, i, hi] * (v[bi, i, hi] - s.T @ k[bi, i, hi])
                s = s + torch.outer(k[bi, i, hi], delta)
                o[bi, i, hi] = s.T @ (scale * q[bi, i, hi])
            states[bi, hi] = s
    return o, states


def test_gated_delta_rule_chunked_and_step_equal_the_recurrence():
    q, k, v, g, beta = _inputs(2, 150, 3, 7)
    s0 = torch.randn(2, 3, 7, 7)
    want_o, want_s = _direct(q, k, v, g, beta, 7**-0.5, s0)
    for chunk in (64, 16, 1):  # several chunks, a ragged last one, and chunks of one
        o, s = delta_rule_chunked(q, k, v, g, beta, 7**-0.5, s0.clone(), chunk=chunk)
        assert float((o - want_o).abs().max()) <= 1e-4 and float((s - want_s).abs().max()) <= 1e-4
    state = s0.clone()
    steps = [
        delta_rule_step(q[:, i], k[:, i], v[:, i], g[:, i], beta[:, i], 7**-0.5, state)
        for i in range(150)
    ]
    assert float((torch.stack(steps, 1) - want_o).abs().max()) <= 1e-4
    assert float((state - want_s).abs().max()) <= 1e-4


def test_gated_delta_rule_survives_strong_decay():
    """Large negative log-gates (e^G underflows within a chunk) stay finite and exact."""
    q, k, v, g, beta = _inputs(1, 100, 2, 5, seed=1)
    g = g * 40.0  # down to about -200 per token
    want, _ = _direct(q, k, v, g, beta, 0.5)
    got, s = delta_rule_chunked(q, k, v, g, beta, 0.5)
    assert torch.isfinite(got).all() and torch.isfinite(s).all()
    assert float((got - want).abs().max()) <= 1e-4


def test_router_selection_uses_the_bias_and_weights_do_not():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 16, generator=g)
    bias = 0.5 * torch.randn(16, generator=g)
    sel, w = route(logits, bias, 4)
    a = torch.sigmoid(logits)
    for n in range(50):
        s, ww = ref_route(a[n], bias, 4)
        assert sel[n].tolist() == s
        assert float((w[n] - ww).abs().max()) <= 1e-6
    assert float((w.sum(-1) - 1).abs().max()) <= 1e-6
    sel0, _ = route(logits, torch.zeros(16), 4)
    assert not torch.equal(sel0, sel)  # the bias changes which experts run


def test_expert_paths_agree_with_and_without_biases():
    g = torch.Generator().manual_seed(3)
    for bias in (False, True):
        ex = Experts(10, 12, 6, bias)
        with torch.no_grad():
            for p in ex.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        x = torch.randn(40, 12, generator=g)
        sel = torch.stack([torch.randperm(10, generator=g)[:3] for _ in range(40)])
        w = torch.rand(40, 3, generator=g)
        want = torch.zeros(40, 12)
        for n in range(40):
            for j in range(3):
                e = int(sel[n, j])
                h = x[n] @ ex.gate_up_weight[e] + (_row(ex.gate_up_bias, e) if bias else 0)
                y = (F.silu(h[:6]) * h[6:]) @ ex.down_weight[e] + (
                    _row(ex.down_bias, e) if bias else 0
                )
                want[n] += w[n, j] * y
        with torch.no_grad():
            assert float((ex._pairs(x, sel, w) - want).abs().max()) <= 1e-5
            assert float((ex._grouped(x, sel, w) - want).abs().max()) <= 1e-5


def test_token_normalisation_quirks():
    assert normalise_token("\u0120the") == "gthe"  # byte-level Ġ decomposes before the strip
    assert normalise_token("\u2581The") == "the"
    assert normalise_token("  Caf\u00e9  au\tlait ") == "cafe au lait"
    assert normalise_token("\ufb01ne") == "fine"  # NFKC ligature
    assert normalise_token("\u010a") == "c"  # byte-level newline joins the 'c' group
    vocab = {"b": 3, "\u0120B": 1, "A": 2, "a": 0, "\u010a": 4, "c": 5}
    m = token_mapping(vocab, 8)
    # groups numbered in ascending id order: a(0), gb(1), b(3)... ; A joins a, Ċ joins c
    assert m.tolist() == [0, 1, 0, 2, 3, 3, 0, 0]


def test_moe_1b_preset_follows_the_trainer_defaults():
    """The benchmark preset (built on the meta device): dims of formats v2 §3/§6.3, active count."""
    from swamla_tui.bench.run import moe_1b_config
    from swamla_tui.model.transformer import SWAMLA

    cfg = moe_1b_config()
    assert cfg.layer_kinds == ["deltanet", "deltanet", "mla"] * 4
    assert cfg.deltanet is not None and cfg.deltanet.proj_dim == 1020  # 12 x (1024 // 12)
    assert [cfg.kv_rank(i) for i in (2, 5, 8, 11)] == [
        max(1, int(256 * (0.5 + 1.5 * i / 11))) for i in (2, 5, 8, 11)
    ]
    m = cfg.moe
    assert m is not None and (m.n_experts, m.top_k, m.width, m.expert_dim) == (128, 12, 256, 256)
    with torch.device("meta"):
        model = SWAMLA(cfg)
    per_expert = 256 * 512 + 256 * 256
    assert model.active_params() == model.num_params() - 4 * (128 - 12) * per_expert


def test_g7_preset_adds_what_every_g7_model_has():
    """The G7 benchmark preset: moe-1b plus residual scalars and value embeddings on the
    even layers (MLA tables 50304 rows, DeltaNet tables the vocabulary), built on meta."""
    from swamla_tui.bench.run import g7_config, moe_1b_config
    from swamla_tui.model.transformer import SWAMLA

    cfg, base = g7_config(), moe_1b_config()
    assert cfg.generation == "G7" and cfg.residual_scalars
    assert cfg.ve_rows == [50257, 0, 50304, 0, 50257, 0, 50257, 0, 50304, 0, 50257, 0]
    with torch.device("meta"):
        model, plain = SWAMLA(cfg), SWAMLA(base)
    names = dict(model.named_parameters())
    assert names["transformer.h.0.attn.value_embeds.weight"].shape == (50257, 1020)
    assert names["transformer.h.2.attn.value_embeds.weight"].shape == (50304, 12 * 128)
    assert "transformer.h.1.attn.value_embeds.weight" not in names
    assert names["x0_lambdas"].shape == names["resid_lambdas"].shape == (12,)
    tables = 4 * 50257 * 1020 + 2 * 50304 * 12 * 128
    assert model.num_params() - plain.num_params() - tables == 6 * 32 + 2 * 12  # gates, scalars
    rows = 4 * 1020 + 2 * 12 * 128  # a step reads one row of each table
    assert model.active_params() - plain.active_params() == rows + 6 * 32 + 2 * 12
