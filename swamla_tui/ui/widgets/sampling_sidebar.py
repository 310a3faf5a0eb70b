"""Sidebar of live sampling sliders (reusable: chat screen and batch screen).

It owns no state beyond the sliders, built from `PARAM_SPECS` (the ranges the CLI and
the slash commands use too): when a slider moves it writes the new value into the
`SamplingParams` instance it was given (the live object a running stream reads) and
posts `SamplingSidebar.Changed`. `set_value` moves a slider from code (slash commands).

With `release_focus` (the chat screen), Esc and printable keys pressed on a slider post
`SamplingSidebar.Released` (the chat puts the focus back in its input, with the key typed
there) instead of vanishing. The batch screen leaves it off: its letter keys are commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from ...base.params import PARAM_SPECS, SamplingParams
from .slider import Slider


class SamplingSidebar(VerticalScroll):
    """Sliders for temperature, top-k, top-p, repetition penalty and max new tokens."""

    DEFAULT_CSS = """
    SamplingSidebar {
        width: 32;
        height: 1fr;
        padding: 0 0;
    }
    SamplingSidebar > .sidebar--title {
        padding: 0 1;
        color: $text-muted;
        text-style: bold;
    }
    SamplingSidebar > Slider { margin-bottom: 1; }
    SamplingSidebar > .sidebar--hint { padding: 0 1; color: $text-muted; }
    """

    @dataclass
    class Changed(Message):
        """A sampling parameter was changed with a slider."""

        sidebar: SamplingSidebar
        name: str
        value: float

        @property
        def control(self) -> SamplingSidebar:
            return self.sidebar

    @dataclass
    class Released(Message):
        """Esc (`text` empty) or a printable key (`text`) on a slider: leave the sliders."""

        sidebar: SamplingSidebar
        text: str

        @property
        def control(self) -> SamplingSidebar:
            return self.sidebar

    def __init__(
        self,
        params: SamplingParams,
        *,
        max_length: int | None = None,
        title: str = "Sampling",
        id: str | None = None,
        classes: str | None = None,
        release_focus: bool = False,
        max_pending: bool = False,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.release_focus = release_focus
        self.max_pending = max_pending and not max_length
        """Max new tokens waits for `set_max_length` (the chat, while its model loads):
        shown on the 1..2048 cap first, its thumb would jump when the limit came."""
        self.params = params
        self.max_length = max_length
        self.title = title

    def compose(self) -> ComposeResult:
        yield Static(self.title, classes="sidebar--title")
        for name, spec in PARAM_SPECS.items():
            high = spec.hi
            if name == "max_new_tokens" and self.max_length:
                high = self.max_length
            slider = Slider(
                spec.lo,
                high,
                value=getattr(self.params, name),
                step=spec.step,
                big_step=spec.big_step,
                label=spec.label,
                value_format="{:d}" if spec.integer else "{:.2f}",
                id=f"slider-{name.replace('_', '-')}",
                name=name,
            )
            slider.range_pending = name == "max_new_tokens" and self.max_pending
            yield slider
        yield Static(
            "←/→ step · shift big step\nhome/end ends · mouse drag",
            classes="sidebar--hint",
        )

    def on_mount(self) -> None:
        # a value outside a slider's range was clamped: the params follow the slider
        for name in PARAM_SPECS:
            value = self.slider(name).value
            if getattr(self.params, name) != value:
                setattr(self.params, name, value)

    def on_key(self, event: events.Key) -> None:
        # handled on the first hop up from the slider, so the key order is kept
        if not self.release_focus:
            return
        if event.key == "escape":
            event.stop()
            self.post_message(self.Released(self, ""))
        elif event.is_printable and event.character and event.character != "?":
            event.stop()  # "?" stays the help key
            self.post_message(self.Released(self, event.character))

    def slider(self, name: str) -> Slider:
        return self.query_one(f"#slider-{name.replace('_', '-')}", Slider)

    def set_max_length(self, max_length: int) -> None:
        """Limit max new tokens to the model's context length."""
        self.max_length = max_length
        self.max_pending = False
        self.slider("max_new_tokens").set_range(PARAM_SPECS["max_new_tokens"].lo, max_length)

    def set_value(self, name: str, value: float) -> None:
        """Move a slider from code; the params object is updated through the slider."""
        self.slider(name).value = value

    def on_slider_changed(self, event: Slider.Changed) -> None:
        event.stop()
        name = event.slider.name
        if name is None or name not in PARAM_SPECS:
            return
        value = int(event.value) if PARAM_SPECS[name].integer else float(event.value)
        if getattr(self.params, name) != value:
            setattr(self.params, name, value)
        self.post_message(self.Changed(self, name, value))
