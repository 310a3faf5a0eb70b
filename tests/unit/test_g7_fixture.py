"""The public G7 fixture (the trainer's 2026 code): value embeddings, residual scalars,
FoPE, per-dimension Engram gate, fused DeltaNet keys, bf16 experts and an EMA copy.

Parity with the original float32 forward at every position (trained weights and the
inference.py EMA overlay), greedy tokens of its generation loop, and every decode path
(cached step by step, ragged batches, prefill in pieces, continuous batching) against
the plain full forward.
"""

from __future__ import annotations

import pytest
import torch

import swamla_tui
from swamla_tui.base.params import SamplingParams
from swamla_tui.batch.job import PromptFinished
from tests.support.continuous import alone, continuous, mixed_prompts
from tests.support.g7 import G7_CKPT, GREEDY, TOL, expected, upto_first_eos
from tests.support.helpers import ragged_decode_max_error


@pytest.fixture(scope="module")
def lm():
    return swamla_tui.load(G7_CKPT)  # tokenizer: the `tok384` folder beside the file


@pytest.fixture(scope="module")
def lm_ema():
    return swamla_tui.load(G7_CKPT, ema=True)


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b).abs().max())


def test_trained_weights_match_the_original_at_every_position(lm):
    exp = expected()
    got = lm.logits(exp["input_ids"]).cpu()
    assert _maxdiff(got, exp["logits_no_ema"]) <= TOL
    assert _maxdiff(got, exp["logits"]) > 0.1  # the EMA overlay is another function
    assert _maxdiff(got, exp["logits_gpu_bf16_deltanet"]) > 10 * _maxdiff(got, exp["logits_no_ema"])


def test_ema_overlay_matches_inference_py(lm_ema):
    exp = expected()
    assert _maxdiff(lm_ema.logits(exp["input_ids"]), exp["logits"]) <= TOL
    assert bool(exp["ema_overlay_wte_is_raw"])
    raw = swamla_tui.load(G7_CKPT, tokenizer=False, engram_mapping=exp["engram_mapping"].tolist())
    assert torch.equal(lm_ema.model.transformer.wte.weight, raw.model.transformer.wte.weight)


def test_what_was_found_and_why(lm, lm_ema):
    c = lm.config
    assert c.generation == "G7" and lm.meta["generation"].startswith("G7: G7 weights")
    assert c.layer_kinds == ["deltanet", "deltanet", "mla", "deltanet", "deltanet", "mla"]
    assert (c.n_embd, c.n_head, c.vocab_size, c.block_size) == (48, 2, 384, 128)
    assert c.ve_rows == [384, 0, 50304, 0, 384, 0] and c.ve_gate_dim == 32
    assert c.residual_scalars and c.attn_factor == 1.0
    assert c.fope is not None and (c.fope.n_floor, c.fope.n_active, c.fope.n_harmonics) == (
        1,
        11,
        4,
    )
    assert c.engram is not None and c.engram.gate_bias
    assert c.deltanet is not None and c.deltanet.fused_keys and c.deltanet.n_head == 2
    assert lm.meta["checkpoint_type"] == "base" and lm.meta["pretrain_tokens"] == 10**9
    assert lm.meta["instruct_tokens"] == 0
    card = lm.card()
    assert card["value embeddings"].startswith("layers 0,2,4 (rows 384/50304")
    assert card["residual scalars"].startswith("on")
    assert "4 harmonics" in card["MLA positions"] and "FoPE" in card["MLA positions"]
    assert card["YaRN"].startswith("off")
    assert "per-dimension gate" in card["Engram"]
    assert card["checkpoint type"] == "base"
    assert card["pretrain / instruct tokens"] == "1,000,000,000 / 0"
    assert card["weights"].startswith("trained") and "EMA" in card["weights"]
    assert lm_ema.card()["weights"].startswith("EMA overlay")
    assert any("carries EMA weights" in n for n in lm.notices)
    assert not any("unknown" in n or "ignored" in n for n in lm.notices)
    assert "ignored weights" not in card


def test_greedy_matches_the_original_loop_up_to_eos(lm, lm_ema):
    exp = expected()
    for model, key in ((lm, "greedy_ids_no_ema"), (lm_ema, "greedy_ids")):
        out = model.generate_ids(exp["prompt_ids"].tolist(), max_new_tokens=40, **GREEDY)
        for row, want in zip(out, exp[key].tolist(), strict=True):
            assert row == upto_first_eos(want, model.eos_id)


def test_cached_decode_matches_full_forward_every_step_ragged(lm):
    """VE needs each step's id, residual scalars x0, FoPE the absolute position."""
    assert ragged_decode_max_error(lm, expected()["input_ids"]) <= TOL


def test_prefill_in_pieces_equals_one_prefill(lm):
    ids = expected()["input_ids"][:1, :100]
    ref = lm.logits(ids).cpu()
    m = lm.model
    with torch.inference_mode():
        cache = m.setup_cache(1, 128)
        outs = []
        for a, b in ((0, 37), (37, 38), (38, 100)):
            pos = torch.arange(a, b)[None]
            ctx = m.step_context(pos, cache)
            outs.append(m.forward_cached(ids[:, a:b], pos, cache, ctx).float().cpu())
        assert any(t is not None and float(t.abs().sum()) > 0 for t in cache.mla_ve)
    assert float((torch.cat(outs, 1) - ref).abs().max()) <= TOL


def test_batched_equals_alone(lm):
    exp = expected()
    prompts = [exp["prompt_ids"][0, :16].tolist(), exp["prompt_ids"][1, :5].tolist()]
    together = lm.generate_ids(prompts, max_new_tokens=24, **GREEDY)
    alone_ = [lm.generate_ids([p], max_new_tokens=24, **GREEDY)[0] for p in prompts]
    assert together == alone_


@pytest.mark.parametrize("seed", [None, 11], ids=["greedy", "seeded"])
def test_continuous_batching_equals_alone(lm, seed):
    params = SamplingParams(
        temperature=0.0 if seed is None else 0.9, top_k=1 if seed is None else 40,
        top_p=1.0 if seed is None else 0.9, repetition_penalty=1.0, seed=seed,
    )  # fmt: skip
    engine = lm.engine
    prompts = mixed_prompts(engine.vocab_size, [5, 17, 2, 9, 30], seed=8)
    limits = [7, 3, 11, 5, 4]
    got, _, _ = continuous(engine, prompts, params, limits, slots=2)
    want = {
        i: alone(engine, p, params, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True))
    }
    assert got == want


def test_perplexity_equals_the_full_forward(lm):
    text = "The quick brown fox jumps over the lazy dog, twice."
    ids = [lm.eos_id, *lm.encode(text)]  # perplexity scores the first token after EOS
    assert 5 < len(ids) < 120
    logp = torch.log_softmax(lm.logits(torch.tensor([ids]))[0].double(), dim=-1)
    nll = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean()
    res = lm.perplexity(text)
    assert res.tokens == len(ids) - 1
    assert abs(res.loss - float(nll)) <= 1e-4


def test_recorded_token_probabilities_equal_the_full_forward(lm):
    """The inspector's recording (``logprobs=k``) on G7: each token's raw log-probability
    and top-5 are the full forward's, and recording does not change the tokens."""
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=10)
    prompt_text = "def add(a, b):\n    return"
    plain = lm.stream(prompt_text, params)
    "".join(plain)
    s = lm.stream(prompt_text, params, logprobs=5)
    "".join(s)
    assert s.token_ids == plain.token_ids
    prompt, ids = lm.encode(prompt_text), s.token_ids
    full = torch.log_softmax(lm.logits(torch.tensor([prompt + ids]))[0].float(), dim=-1)
    assert len(s.token_logprobs) == len(ids) > 0
    for t, rec in enumerate(s.token_logprobs):
        row = full[len(prompt) - 1 + t]
        assert rec.token == ids[t] == int(row.argmax())
        assert rec.raw_logprob == pytest.approx(float(row[ids[t]]), abs=1e-4)
        assert [i for i, _ in rec.raw_top] == torch.topk(row, 5).indices.tolist()


def test_ab_trained_against_ema_runs_both_sides(lm, lm_ema):
    """A/B on G7 (`--compare`): the two weight sets share the tokenizer, every prompt gets
    a result on both sides, each side equal to that model's own batch run."""
    import threading

    from swamla_tui.batch.compare import check_compatible, run_compare

    check_compatible(lm, lm_ema)
    prompts = ["def add(a, b):", "class Foo:", "import os"]
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    got: dict[tuple[str, int], str] = {}
    for side, event in run_compare(
        lm, lm_ema, prompts, params=params, batch_size=2, cancel=threading.Event()
    ):
        if isinstance(event, PromptFinished):
            got[(side, event.index)] = event.outcome.completion
    for side, model in (("a", lm), ("b", lm_ema)):
        own = {r.index: r.completion for r in model.generate_batch(prompts, params)}
        assert [got[(side, i)] for i in range(3)] == [own[i] for i in range(3)]
    assert [got[("a", i)] for i in range(3)] != [got[("b", i)] for i in range(3)]
