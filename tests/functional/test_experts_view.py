"""Inside the MoE in the chat: the details panel's experts and the ``/experts`` view,
on the v2 fixture (DeltaNet + latent MoE, 32 experts, top-8) after a short greedy reply.

Update the snapshot with: pytest tests/functional/test_experts_view.py --snapshot-update
"""

from __future__ import annotations

import pytest

import swamla_tui
from swamla_tui.base.params import SamplingParams
from swamla_tui.ui.screens.experts import ExpertsScreen
from swamla_tui.ui.widgets.token_details import TokenDetails
from tests.support.fakes import FakeLM
from tests.support.helpers import V2_CKPT, V2_TOKENIZER

from .pilot import SIZE, errors, make_app, send, wait_for, wait_loaded

GREEDY = SamplingParams(temperature=0.0, seed=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def v2_lm():
    return swamla_tui.load(V2_CKPT, tokenizer=V2_TOKENIZER)


async def _reply(pilot, app) -> None:
    app.chat_screen.prompt_input.cursor_blink = False
    await send(pilot, "Hello there")
    await wait_for(pilot, lambda: not app.chat_screen.generating, timeout=60)
    reply = app.chat_screen.turn_widgets[-1][1]
    await wait_for(pilot, lambda: reply.reply_tree is not None)


def test_experts_view_snapshot(snap_compare, v2_lm, tmp_path):
    app = make_app(v2_lm, tmp_path, params=GREEDY, probs=True)

    async def run_before(pilot) -> None:
        await wait_loaded(pilot)
        await _reply(pilot, app)
        await send(pilot, "/experts")
        await wait_for(pilot, lambda: isinstance(app.screen, ExpertsScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_the_view_counts_the_replys_tokens(v2_lm, tmp_path):
    app = make_app(v2_lm, tmp_path, params=GREEDY, probs=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await _reply(pilot, app)
        tree = app.chat_screen.turn_widgets[-1][1].reply_tree
        assert tree is not None
        steps = tree.current.steps
        await send(pilot, "/experts")
        await wait_for(pilot, lambda: isinstance(app.screen, ExpertsScreen))
        view = app.screen
        assert isinstance(view, ExpertsScreen)
        s = view.summary
        assert [st.layer for st in s.layers] == [2, 5] and s.tokens == len(steps)
        for st in s.layers:
            assert sum(st.counts) == 8 * len(steps) and len(st.counts) == 32
            assert st.never == tuple(e for e in range(32) if st.counts[e] == 0)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ExpertsScreen))
        await pilot.press("f4")  # inspect the reply: the panel lists the token's experts
        panel = app.query_one(TokenDetails)
        await wait_for(pilot, lambda: panel.has_class("-shown"))
        text = str(panel.render())
        first = steps[-1].routing  # F4 starts at the last token
        assert first is not None
        assert "MoE layer 2" in text and "MoE layer 5" in text
        assert f"{first.moe[0].experts[0]}:{first.moe[0].weights[0]:.2f}" in text


async def test_experts_needs_recorded_routing(tmp_path):
    app = make_app(FakeLM(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await send(pilot, "/experts")
        assert "/probs on" in errors(app)[-1]
        await send(pilot, "/probs on")
        await send(pilot, "hi")
        await wait_for(pilot, lambda: not app.chat_screen.generating)
        await send(pilot, "/experts")
        await wait_for(pilot, lambda: "no MoE or Engram layers" in errors(app)[-1])
        assert not isinstance(app.screen, ExpertsScreen)


async def test_experts_while_the_reply_is_written_says_to_wait(tmp_path):
    lm = FakeLM(["a", "b", "c"], hold=True)
    app = make_app(lm, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await send(pilot, "/probs on")
        await send(pilot, "hi")
        await wait_for(pilot, lambda: app.chat_screen.generating)
        await send(pilot, "/experts")
        await wait_for(pilot, lambda: "still being written" in errors(app)[-1])
        assert "/probs off" not in errors(app)[-1]
        lm.release(3)
        await wait_for(pilot, lambda: not app.chat_screen.generating)
