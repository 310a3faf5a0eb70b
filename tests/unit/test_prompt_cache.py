"""The turn-to-turn prompt cache against a fresh prefill, token for token.

Scripted conversations at the token-id level (the chat's prompts are ids by the time they
reach the engine): each turn runs once through one `PromptCache` and once from scratch, and
the new ids must be the same; the script covers a plain next turn, a retry, a reply the
chat cut (stop string), an undo, a branch, a clear, front trimming and a context that slid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

import swamla_tui
from swamla_tui.base.params import SamplingParams
from swamla_tui.engine.core import Engine
from swamla_tui.engine.pool import CachePool
from swamla_tui.engine.prompt_cache import PromptCache
from swamla_tui.model.token_map import token_mapping
from swamla_tui.model.transformer import SWAMLA
from tests.support.g7 import G7_CKPT
from tests.support.helpers import (
    FIXTURE_CKPT,
    FIXTURES,
    V2_TOKENIZER,
    random_init_,
    v2_variant_config,
)

V2_CKPT = FIXTURES / "v2" / "deltanet_moe_train.pt"
GREEDY = SamplingParams(0.0, 1, 1.0, 1.0, 6, None)
SEEDED = SamplingParams(0.9, 40, 0.95, 1.1, 6, 1234)


def _engine(model: SWAMLA, max_length: int) -> Engine:
    return Engine(model, max_length, None, CachePool(model, max_length, graphs=False))


def _engram_model() -> SWAMLA:
    from transformers import AutoTokenizer

    cfg = v2_variant_config("engram")
    model = SWAMLA(cfg).eval()
    random_init_(model, seed=11)
    vocab = dict(AutoTokenizer.from_pretrained(str(V2_TOKENIZER)).get_vocab())
    model.set_token_mapping(token_mapping(vocab, cfg.vocab_size))
    model.init_buffers()
    return model


_MODELS: dict[str, SWAMLA] = {}


def _model(name: str) -> SWAMLA:
    if name not in _MODELS:
        if name == "v1":
            _MODELS[name] = swamla_tui.load(FIXTURE_CKPT, tokenizer=False).model
        elif name == "v1-window":
            lm = swamla_tui.load(FIXTURE_CKPT, tokenizer=False, swa_attention="window")
            _MODELS[name] = lm.model
        elif name == "v2":
            _MODELS[name] = swamla_tui.load(V2_CKPT, tokenizer=False).model
        elif name == "g7":  # value embeddings, FoPE, residual scalars (and its recurrence)
            _MODELS[name] = swamla_tui.load(G7_CKPT).model
        else:
            _MODELS[name] = _engram_model()
    return _MODELS[name]


def _generate(
    engine: Engine, prompt: list[int], params: SamplingParams, pc: PromptCache | None
) -> tuple[list[int], int]:
    gen = engine.generation([prompt], params, prompt_cache=pc)
    for _ in gen:
        pass
    return gen.rows[0].new, gen.reused


@dataclass
class Script:
    """A conversation as ids: system, turns of (user, reply), and what each step reused."""

    engine: Engine
    params: SamplingParams
    pc: PromptCache
    system: list[int]
    turns: list[tuple[list[int], list[int]]] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    prompts: list[list[int]] = field(default_factory=list)
    seed: int = 0

    def user(self, n: int = 5) -> list[int]:
        self.seed += 1
        g = torch.Generator().manual_seed(self.seed)
        v = self.engine.vocab_size
        return torch.randint(1, v, (n,), generator=g).tolist()

    def prompt(self, user: list[int], turns: list[tuple[list[int], list[int]]]) -> list[int]:
        out = list(self.system)
        for u, r in turns:
            out += u + r
        return out + user

    def run(self, prompt: list[int]) -> list[int]:
        cached, reused = _generate(self.engine, prompt, self.params, self.pc)
        fresh, _ = _generate(self.engine, prompt, self.params, None)
        assert cached == fresh, f"step {len(self.reused)}: reused {reused} of {len(prompt)}"
        self.reused.append(reused)
        self.prompts.append(prompt)
        return cached

    def turn(self, n_user: int = 5, *, cut: int | None = None) -> None:
        """A next turn; `cut`: the reply is kept shorter (a stop string cut it)."""
        u = self.user(n_user)
        reply = self.run(self.prompt(u, self.turns))
        self.turns.append((u, reply[:cut] if cut is not None else reply))

    def retry(self) -> None:
        u, _ = self.turns.pop()
        reply = self.run(self.prompt(u, self.turns))
        self.turns.append((u, reply))


def _script(name: str, params: SamplingParams) -> Script:
    model = _model(name)
    engine = _engine(model, 96)
    s = Script(engine, params, engine.prompt_cache(), system=[])
    s.system = s.user(4)
    s.turn()  # 0: cold
    s.turn()  # 1: extends every id fed so far
    s.retry()  # 2: the same prompt again
    s.turn(cut=2)  # 3: the previous reply was whole
    s.turn()  # 4: after a cut reply: from the prompt-end snapshot of 3
    s.turns.pop()  # undo
    s.turn()  # 5: an undo, then a new message
    u, r = s.turns[-1]
    s.run(s.prompt(u, s.turns[:-1]) + r[:2])  # 6: a branch: the reply continued from 2 ids
    s.turns = s.turns[1:]  # 7: the oldest turn left the context (front trimming)
    s.turn()
    s.turns = []  # 8: /clear
    s.turn()
    s.turn()  # 9
    s.turns.append((s.user(60), []))  # 10: the context slides at max_length mid-reply
    s.run(s.prompt(s.user(10), s.turns) + s.user(5))
    s.turn()  # 11
    return s


@pytest.mark.parametrize(
    ("name", "params"),
    [(n, p) for n in ("v1", "v1-window", "v2", "engram") for p in (GREEDY, SEEDED)]
    + [("g7", GREEDY)],
    ids=lambda v: v if isinstance(v, str) else ("greedy" if v.temperature == 0 else "seeded"),
)
def test_cached_turns_give_the_fresh_tokens(name, params):
    """Same new ids as a fresh prefill at every step, and the reuse each step should get."""
    s = _script(name, params)
    p, r = s.prompts, s.reused
    fed = [len(q) + int(params.max_new_tokens) - 1 for q in p]  # the last id is never fed
    recurrent = _model(name).has_recurrent_state
    assert r[0] == 0
    assert r[1] == fed[0]  # the next turn extends every id fed
    assert r[3] == fed[2]
    assert r[7] == (0 if recurrent else len(s.system))  # front trimming
    assert r[10] == 0 and r[11] == 0  # the context slid: the cache was left, nothing reused
    if name == "v1-window":  # window 16: the ring no longer holds what a cut back needs
        assert r[2] == r[4] == 0
        return
    assert r[2] == len(p[2])  # retry: nothing prefilled at all
    if recurrent:  # the live state or a snapshot, nothing in between
        assert r[4] == len(p[3])  # the reply was cut: from the prompt-end snapshot
        assert r[5] == len(p[3])  # undo: from the turn-boundary snapshot of step 4
        assert r[6] == len(p[5])  # branch: the prompt-end snapshot of step 5
    else:  # cut back to the common prefix (a whole prompt leaves its last id to prefill)
        assert r[4] == r[5] == len(p[3]) + 2
        assert r[6] == len(p[6]) - 1
    assert s.pc.hits == sum(1 for n in r if n)


def test_a_wrapped_ring_is_not_cut_behind_its_window():
    model = _model("v1-window")
    engine = _engine(model, 96)
    pc = engine.prompt_cache()
    g = torch.Generator().manual_seed(3)
    long = torch.randint(1, 512, (60,), generator=g).tolist()  # window 16: the ring wrapped
    _generate(engine, long, GREEDY, pc)
    early = long[:20] + [7, 8, 9]  # diverges where the ring no longer holds the window
    cached, reused = _generate(engine, early, GREEDY, pc)
    assert reused == 0
    assert cached == _generate(engine, early, GREEDY, None)[0]
    # one new id: the ring holds positions 43..59, all a query at 59 sees (59 - 16 = 43)
    _generate(engine, long, GREEDY.copy(max_new_tokens=1), pc)
    late = long[:59] + [7, 8]
    cached, reused = _generate(engine, late, GREEDY, pc)
    assert reused == 59
    assert cached == _generate(engine, late, GREEDY, None)[0]


@pytest.mark.parametrize("name", ["v1", "v1-window", "v2", "engram", "g7"])
def test_suffix_prefill_logits_match_the_full_forward(name):
    model = _model(name)
    pc = PromptCache(model, 96)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, model.cfg.vocab_size, (80,), generator=g).tolist()
    with torch.inference_mode():
        ref = model(torch.tensor([ids])).float()[0]
    errs = []
    for n in (30, 50, 80, 40, 40):  # extend, extend, cut back (or snapshot), exact hit
        got = pc.prefill(ids[:n])
        errs.append(float((got.logits[0].float() - ref[n - 1]).abs().max()))
    assert max(errs) <= 1e-4
    assert pc.hits >= 3


def test_another_dtype_starts_over():
    model = swamla_tui.load(FIXTURE_CKPT, tokenizer=False).model
    pc = PromptCache(model, 96)
    ids = list(range(1, 40))
    pc.prefill(ids[:20])
    assert pc.prefill(ids).reused == 20
    model.to(torch.float64)
    assert pc.prefill(ids).reused == 0
    assert pc.cache is not None and pc.cache.mla_kv[2] is not None
    assert pc.cache.mla_kv[2].dtype == torch.float64


@pytest.mark.parametrize("params", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_graph_loop_on_the_kept_cache(params):
    """On CUDA a chat decodes through the prompt cache's own `GraphLoop`: its body, run
    eagerly here, gives the fresh tokens turn after turn (and after a cut back)."""
    model = _model("v1")
    graphs = Engine(model, 96, None, CachePool(model, 96, graphs=True))
    plain = _engine(model, 96)
    pc = PromptCache(model, 96, graphs=True, capture=False)
    g = torch.Generator().manual_seed(9)
    prompt = torch.randint(1, 512, (12,), generator=g).tolist()
    for turn in range(4):
        gen = graphs.generation([prompt], params, prompt_cache=pc)
        for _ in gen:
            pass
        assert gen.dec.graph is pc.graph is not None  # decoded through the graph loop
        assert gen.rows[0].new == _generate(plain, prompt, params, None)[0]
        cut = len(prompt) - 3 if turn == 2 else len(prompt)  # turn 3 edits the last turn
        prompt = prompt[:cut] + gen.rows[0].new + [5, 6, 7]
    assert pc.hits == 3
