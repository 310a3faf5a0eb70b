"""A small fake LoadedModel / TokenStream (docs/ARCHITECTURE.md contract) for UI tests.

Also holds shared helpers for the chat UI tests; the one test here checks the fake itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from swamla_tui.params import SamplingParams

SIZE = (120, 36)


class FakeStream:
    def __init__(
        self,
        lm: FakeLM,
        prompt: str,
        params: SamplingParams,
        stop: tuple[str, ...],
    ) -> None:
        self.lm = lm
        self.prompt = prompt
        self.params = params
        self.stop = stop
        self.text = ""
        self.prompt_tokens = len(lm.encode(prompt))
        self.new_tokens = 0
        self.tokens_per_second = 0.0
        self.finish_reason: str | None = None
        self.truncated = False
        self.seen: list[dict[str, object]] = []
        self._cancel = threading.Event()

    @property
    def context_tokens(self) -> int:
        return self.prompt_tokens + self.new_tokens

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[str]:
        lm = self.lm
        index = 0
        while True:
            if self._cancel.is_set():
                self.finish_reason = "cancelled"
                return
            if index >= len(lm.pieces) and not lm.endless:
                self.finish_reason = "eos"
                return
            if lm.hold:
                while not lm.gate.acquire(timeout=0.005):
                    if self._cancel.is_set():
                        self.finish_reason = "cancelled"
                        return
            elif lm.delay:
                time.sleep(lm.delay)
            if self.new_tokens >= self.params.max_new_tokens:
                self.finish_reason = "length"
                return
            if lm.error_after is not None and index >= lm.error_after:
                raise lm.error
            pieces = lm.pieces
            if index >= len(pieces):
                if lm.endless:
                    piece = pieces[index % len(pieces)]
                else:
                    self.finish_reason = "eos"
                    return
            else:
                piece = pieces[index]
            index += 1
            self.seen.append(self.params.as_dict())
            self.new_tokens += 1
            self.tokens_per_second = lm.tokens_per_second
            self.text += piece
            for s in self.stop:
                if s in self.text:
                    self.finish_reason = "stop"
                    yield piece
                    return
            yield piece


class FakeLM:
    """Replies with `pieces`, one per token. `hold=True`: each token waits for `release()`."""

    def __init__(
        self,
        pieces: list[str] | None = None,
        *,
        max_length: int = 512,
        hold: bool = False,
        delay: float = 0.0,
        endless: bool = False,
        error_after: int | None = None,
        error: BaseException | None = None,
        copy_params: bool = False,
    ) -> None:
        self.pieces = pieces if pieces is not None else [" Hello", ",", " world", "!"]
        self.max_length = max_length
        self.hold = hold
        self.gate = threading.Semaphore(0)
        self.delay = delay
        self.endless = endless
        self.error_after = error_after
        self.error = error or RuntimeError("CUDA out of memory")
        self.copy_params = copy_params
        self.tokens_per_second = 42.0
        self.source = "fake.pt"
        self.streams: list[FakeStream] = []
        self.prompts: list[str] = []

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self.gate.release()

    def summary(self) -> str:
        return "1,234 params · 2 SWA + 1 MLA · float32 · cpu"

    def card(self) -> dict[str, str]:
        return {"source": self.source, "params": "1,234", "layers": "2 SWA + 1 MLA"}

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 512 for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    def stream(
        self,
        text: str,
        params: SamplingParams | None = None,
        *,
        stop: tuple[str, ...] = (),
        **overrides: Any,
    ) -> FakeStream:
        params = params if params is not None else SamplingParams()
        if self.copy_params:
            params = params.copy()
        self.prompts.append(text)
        s = FakeStream(self, text, params, tuple(stop))
        self.streams.append(s)
        return s


def loader_for(lm: Any) -> Callable[[Callable[[str], None]], Any]:
    def loader(progress: Callable[[str], None]) -> Any:
        progress("Loading fake model…")
        return lm

    return loader


def make_app(lm: Any, tmp_path: Path, **kwargs: Any):
    from swamla_tui.ui.app import SwamlaApp

    kwargs.setdefault("params", SamplingParams(temperature=0.0, seed=0))
    return SwamlaApp(loader_for(lm), data_dir=tmp_path / "data", **kwargs)


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for condition")
        await asyncio.sleep(0.01)
        await pilot.pause()


async def wait_loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.lm is not None or app.load_failed is not None)
    await pilot.pause()


async def wait_idle(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: not app.generating)
    await pilot.pause()


async def send(pilot: Any, text: str) -> None:
    """Type `text` into the input and press Enter."""
    app = pilot.app
    box = app.prompt_input
    box.focus()
    box.load_text(text)
    box.move_cursor(box.document.end)
    await pilot.press("enter")
    await pilot.pause()


def notices(app: Any) -> list[str]:
    return [m.text for m in app.chat.messages() if m.role in ("notice", "error")]


def errors(app: Any) -> list[str]:
    return [m.text for m in app.chat.messages() if m.role == "error"]


def test_fake_stream_follows_contract() -> None:
    lm = FakeLM(["a", "b", "\nYou:", "c"])
    params = SamplingParams(max_new_tokens=10)
    s = lm.stream("x", params, stop=("\nYou:",))
    assert "".join(s) == "ab\nYou:"
    assert s.finish_reason == "stop"
    assert s.params is params
    assert s.context_tokens == 4
