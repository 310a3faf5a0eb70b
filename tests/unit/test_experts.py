"""The torch-free MoE summary (`swamla_tui.base.experts`)."""

from __future__ import annotations

import json
import math

import pytest

from swamla_tui.base.experts import (
    LayerRoute,
    TokenRouting,
    format_summary,
    summarise,
    tally_routes,
)


def _tok(e2: tuple[int, int], e5: tuple[int, int], ent: float, gate: float) -> TokenRouting:
    return TokenRouting(
        (LayerRoute(2, e2, (0.6, 0.4), ent, 4), LayerRoute(5, e5, (0.5, 0.5), 2 * ent, 4)),
        ((1, gate),),
    )


def test_counts_never_chosen_and_entropies():
    routes = [_tok((0, 1), (3, 3), 1.0, 0.2), _tok((0, 2), (3, 1), 2.0, 0.4), None]
    moe, gates = tally_routes(routes)
    s = summarise("reply", moe, gates)
    assert s.tokens == 2
    l2, l5 = s.layers
    assert (l2.layer, l2.counts, l2.never, l2.tokens) == (2, (2, 1, 1, 0), (3,), 2)
    assert l5.counts == (0, 1, 0, 3) and l5.never == (0, 2)
    assert l2.router_entropy == pytest.approx(1.5) and l5.router_entropy == pytest.approx(3.0)
    # load entropy: shares 1/2, 1/4, 1/4 -> -(.5 ln .5 + 2 * .25 ln .25)
    assert l2.load_entropy == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))
    assert l2.max_entropy == pytest.approx(math.log(4))
    assert l5.busiest == (3, 1.5)  # expert 3 took both slots of one token: 3 of 2 tokens
    ((layer, gate),) = s.engram
    assert layer == 1 and gate == pytest.approx(0.3)


def test_balanced_load_reaches_the_ceiling():
    routes = [TokenRouting((LayerRoute(0, (e,), (1.0,), 0.0, 8),)) for e in range(8)]
    (st,) = summarise("batch", *tally_routes(routes)).layers
    assert st.never == () and st.load_entropy == pytest.approx(st.max_entropy)


def test_json_and_text():
    s = summarise("perplexity", *tally_routes([_tok((0, 1), (3, 3), 1.0, 0.5)]))
    data = json.loads(json.dumps(s.to_json()))
    assert data["source"] == "perplexity" and data["tokens"] == 1
    assert data["layers"][0]["tokens_per_expert"] == [1, 1, 0, 0]
    assert data["layers"][0]["never_chosen"] == [2, 3]
    assert data["engram_gate"] == [{"layer": 1, "mean_gate": 0.5}]
    text = format_summary(s)
    assert "layer 2: top-2 of 4" in text and "never chosen: 2, 3" in text
    assert "Engram mean gate 0.500" in text


def test_no_moe_layers():
    s = summarise("reply", [], [])
    assert s.tokens == 0 and format_summary(s) == "no MoE or Engram layers in this model"
