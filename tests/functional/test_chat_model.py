"""The chat app with the real reference checkpoint (tests/helpers.FIXTURE_CKPT)."""

from __future__ import annotations

import json

from swamla_tui.base.params import SamplingParams
from tests.support.helpers import FIXTURE_CKPT

from .pilot import (
    SIZE,
    loaded_app,
    make_app,
    send,
    started,
    wait_for,
    wait_idle,
)


async def test_real_load_through_swamla_load(tmp_path, test_tokenizer_dir):
    """The loader runs swamla_tui.load in the worker; progress, then the summary."""
    import swamla_tui
    from swamla_tui.ui.app import AppOptions, SwamlaApp

    seen: list[str] = []

    def loader(progress):
        progress("Loading checkpoint…")
        seen.append("called")
        return swamla_tui.load(FIXTURE_CKPT, tokenizer=test_tokenizer_dir)

    app = SwamlaApp(loader, AppOptions(params=SamplingParams(), data_dir=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.chat_screen.lm is not None or app.load_failed, timeout=60)
        await pilot.pause()
        assert app.load_failed is None
        assert seen == ["called"]
        assert (
            "SWA" in app.chat_screen.status_bar.model and "MLA" in app.chat_screen.status_bar.model
        )
        assert app.chat_screen.lm is not None
        assert (
            app.chat_screen.sidebar.slider("max_new_tokens").maximum
            == app.chat_screen.lm.max_length
        )


async def test_real_reply_streams_with_live_params(tmp_path, fixture_lm):
    params = SamplingParams(temperature=0.0, seed=0, max_new_tokens=24)
    async with loaded_app(fixture_lm, tmp_path, params=params) as (app, pilot):
        await send(pilot, "Hello there, how are you today?")
        assert app.chat_screen.generating or app.chat_screen.conversation.turns
        await wait_for(pilot, lambda: not app.chat_screen.generating, timeout=60)
        await pilot.pause()
        turn = app.chat_screen.conversation.turns[-1]
        reply = [m for m in app.chat_screen.chat.messages() if m.role == "assistant"][-1]
        assert reply.text == turn.assistant
        assert "\nYou:" not in turn.assistant
        assert app.chat_screen.status_bar.speed.endswith("tok/s")
        assert app.chat_screen.status_bar.context.startswith("ctx ")
        files = list((tmp_path / "data" / "transcripts").glob("*.jsonl"))
        kinds = [json.loads(x)["type"] for x in files[0].read_text().splitlines()]
        assert kinds == ["header", "turn"]
        # greedy: the same message gives the same reply
        await send(pilot, "/retry")
        await wait_for(pilot, lambda: not app.chat_screen.generating, timeout=60)
        await pilot.pause()
        assert app.chat_screen.conversation.turns[-1].assistant == turn.assistant


async def test_real_stop_and_slider_reach_stream(tmp_path, fixture_lm):
    params = SamplingParams(temperature=0.0, seed=0, max_new_tokens=fixture_lm.max_length // 2)
    app = make_app(fixture_lm, tmp_path, params=params)
    streams = []
    real_stream = fixture_lm.stream

    def spy(*args, **kwargs):
        s = real_stream(*args, **kwargs)
        streams.append(s)
        return s

    async with started(app) as pilot:
        app.chat_screen.lm = _Proxy(fixture_lm, stream=spy)
        await send(pilot, "Once upon a time, in a land far away,")
        await wait_for(pilot, lambda: bool(streams), timeout=30)
        stream = streams[0]
        assert stream.params is app.chat_screen.params
        slider = app.chat_screen.sidebar.slider("temperature")
        slider.focus()
        await pilot.press("right")
        assert stream.params.temperature == 0.05
        await pilot.press("escape")
        await wait_idle(pilot)
        if stream.finish_reason == "cancelled":
            assert app.chat_screen.conversation.turns[-1].stopped
        assert app.is_running


class _Proxy:
    """The fixture model with one method replaced (the session fixture stays untouched)."""

    def __init__(self, lm, **overrides):
        self._lm = lm
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._lm, name)


async def test_device_and_dtype_notices_show_in_the_app(tmp_path, test_tokenizer_dir, monkeypatch):
    """``--device cuda`` without CUDA and ``--dtype float16`` on the CPU: the loader's
    notices reach the chat (and, in batch mode, a toast over the batch view), not only
    ``--info``."""
    import torch

    from swamla_tui.cli.main import build_parser, make_loader
    from swamla_tui.ui.app import AppOptions, SwamlaApp

    from .pilot import notices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["--checkpoint", str(FIXTURE_CKPT), "--tokenizer", str(test_tokenizer_dir)]
    args = build_parser().parse_args([*argv, "--device", "cuda", "--dtype", "float16"])
    options = AppOptions(data_dir=tmp_path, mode="batch", params=SamplingParams(max_new_tokens=2))
    app = SwamlaApp(make_loader(args, str(FIXTURE_CKPT)), options)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.chat_screen.lm is not None or app.load_failed, timeout=60)
        await pilot.pause()
        shown = notices(app)
        toasts = [n.message for n in app._notifications]
    want = ["CUDA is not available: running on the CPU", "float16 on the CPU is slow"]
    for text in want:
        assert any(text in n for n in shown), (text, shown)
        assert any(text in t for t in toasts), (text, toasts)
