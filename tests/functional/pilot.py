"""Helpers for the chat app's Pilot tests: build the app around a fake, wait, type."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from swamla_tui.base.params import SamplingParams
from swamla_tui.ui.app import SwamlaApp
from swamla_tui.ui.options import AppOptions
from swamla_tui.ui.widgets.chat_message import ChatMessage
from tests.support.fakes import FakeLM, Outcome, loader_for

SIZE = (120, 36)


def make_app(lm: Any, tmp_path: Path, **options: Any) -> SwamlaApp:
    """The app on `lm` with its data under `tmp_path/data`; `options`: `AppOptions` fields."""
    options.setdefault("params", SamplingParams(temperature=0.0, seed=0))
    return SwamlaApp(loader_for(lm), AppOptions(data_dir=tmp_path / "data", **options))


def reply_widget(app: SwamlaApp) -> ChatMessage:
    """The reply being streamed: it exists from the moment a message is sent."""
    widget = app.chat_screen.reply.widget
    assert widget is not None, "no reply is streaming"
    return widget


def batch_mode_app(lm: Any, tmp_path: Path, prompts: list[str], **options: Any) -> SwamlaApp:
    """The app as ``--mode batch --prompts_file F`` starts it (F written under `tmp_path`)."""
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return SwamlaApp(
        lambda progress: lm,
        AppOptions(mode="batch", prompts_file=str(prompts_file), data_dir=tmp_path, **options),
    )


# Generous: a wait that passes returns at once, and under a loaded machine (CI, xdist
# workers, other jobs) a 5 s wait for a reply or a layout was the rare flaky failure.
WAIT_S = 30.0


async def wait_for(pilot: Any, condition: Callable[[], object], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for condition")
        await asyncio.sleep(0.01)
        await pilot.pause()


async def wait_loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.chat_screen.lm is not None or app.load_failed is not None)
    await pilot.pause()


@asynccontextmanager
async def started(app: SwamlaApp) -> AsyncIterator[Any]:
    """`app.run_test` at the test size, entered once the model has loaded (or failed to)."""
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        yield pilot


@asynccontextmanager
async def loaded_app(
    lm: Any, tmp_path: Path, **options: Any
) -> AsyncIterator[tuple[SwamlaApp, Any]]:
    """`make_app(lm, tmp_path, **options)` started: ``async with loaded_app(...) as (app, pilot)``."""
    app = make_app(lm, tmp_path, **options)
    async with started(app) as pilot:
        yield app, pilot


async def wait_idle(pilot: Any, timeout: float = WAIT_S) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: not app.chat_screen.generating, timeout)
    await pilot.pause()


async def send(pilot: Any, text: str) -> None:
    """Type `text` into the input and press Enter."""
    app = pilot.app
    box = app.chat_screen.prompt_input
    box.focus()
    box.load_text(text)
    box.move_cursor(box.document.end)
    await pilot.press("enter")
    await pilot.pause()


async def ask(pilot: Any, text: str) -> None:
    """Send `text` and wait until the reply (or the command it started) has finished."""
    await send(pilot, text)
    await wait_idle(pilot)


def notices(app: Any) -> list[str]:
    return [m.text for m in app.chat_screen.chat.messages() if m.role in ("notice", "error")]


def errors(app: Any) -> list[str]:
    return [m.text for m in app.chat_screen.chat.messages() if m.role == "error"]


def post_keys(app: Any, keys: list[str]) -> None:
    """Post key events in one burst, as a terminal delivers a fast `tmux send-keys`."""
    from textual import events

    for key in keys:
        char = key if len(key) == 1 else (" " if key == "space" else None)
        app.post_message(events.Key(key, char))


class Recording:
    """A real model whose stream prompts are recorded (`prompts`)."""

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.prompts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lm, name)

    def stream(self, text: str, params: Any = None, *, stop: Any = (), **kw: Any) -> Any:
        self.prompts.append(text)
        return self.lm.stream(text, params, stop=stop, **kw)


class GateBatchLM(FakeLM):
    """A FakeLM with a batch run: each result waits for `release()`; once cancelled, the
    chunk's other prompts come back "cancelled" (as the engine's do)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.batch_sizes: list[int] = []

    def generate_batch(
        self, texts: Any, params: Any = None, *, batch_size: Any = None, stop: Any = (),
        cancel: Any = None,
    ) -> Any:  # fmt: skip
        self.batch_sizes.append(len(texts))
        for i, text in enumerate(texts):
            while not (cancel is not None and cancel.is_set()):
                if self.gate.acquire(timeout=0.005):
                    yield Outcome(i, text, f"answer to {text}", 3, 0.5, "length")
                    break
            else:
                yield Outcome(i, text, "", 0, 0.5, "cancelled")
