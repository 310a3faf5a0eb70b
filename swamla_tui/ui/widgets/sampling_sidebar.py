"""Sidebar of live sampling sliders (reusable: chat screen and batch screen).

It owns no state beyond the sliders: when a slider moves it writes the new value into
the `SamplingParams` instance it was given (the live object a running stream reads) and
posts `SamplingSidebar.Changed`. `set_value` moves a slider from code (slash commands).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from ...params import RANGES, SamplingParams
from .slider import Slider

# name -> (label, step, big step, value format)
SLIDER_SPECS: dict[str, tuple[str, float, float, str]] = {
    "temperature": ("Temperature", 0.05, 0.25, "{:.2f}"),
    "top_k": ("Top-k", 1, 10, "{:d}"),
    "top_p": ("Top-p", 0.01, 0.1, "{:.2f}"),
    "repetition_penalty": ("Repetition penalty", 0.01, 0.1, "{:.2f}"),
    "max_new_tokens": ("Max new tokens", 1, 32, "{:d}"),
}


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

    def __init__(
        self,
        params: SamplingParams,
        *,
        max_length: int | None = None,
        title: str = "Sampling",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.params = params
        self.max_length = max_length
        self.title = title

    def compose(self) -> ComposeResult:
        yield Static(self.title, classes="sidebar--title")
        for name, (label, step, big, fmt) in SLIDER_SPECS.items():
            low, high = RANGES[name]
            if name == "max_new_tokens" and self.max_length:
                high = self.max_length
            yield Slider(
                low,
                high,
                value=getattr(self.params, name),
                step=step,
                big_step=big,
                label=label,
                value_format=fmt,
                id=f"slider-{name.replace('_', '-')}",
                name=name,
            )
        yield Static(
            "←/→ step · shift big step\nhome/end ends · mouse drag",
            classes="sidebar--hint",
        )

    def on_mount(self) -> None:
        # a value outside a slider's range was clamped: the params follow the slider
        for name in SLIDER_SPECS:
            value = self.slider(name).value
            if getattr(self.params, name) != value:
                setattr(self.params, name, value)

    def slider(self, name: str) -> Slider:
        return self.query_one(f"#slider-{name.replace('_', '-')}", Slider)

    def set_max_length(self, max_length: int) -> None:
        """Limit max new tokens to the model's context length."""
        self.max_length = max_length
        self.slider("max_new_tokens").set_range(RANGES["max_new_tokens"][0], max_length)

    def set_value(self, name: str, value: float) -> None:
        """Move a slider from code; the params object is updated through the slider."""
        self.slider(name).value = value

    def sync_from_params(self) -> None:
        """Move every slider to the value held by `params`."""
        for name in SLIDER_SPECS:
            self.slider(name).value = getattr(self.params, name)

    def use_params(self, params: SamplingParams) -> None:
        """Point the sidebar at another live params object (e.g. a new stream's)."""
        self.params = params
        self.sync_from_params()

    def on_slider_changed(self, event: Slider.Changed) -> None:
        event.stop()
        name = event.slider.name
        if name not in SLIDER_SPECS:
            return
        value = int(event.value) if isinstance(RANGES[name][0], int) else float(event.value)
        if getattr(self.params, name) != value:
            setattr(self.params, name, value)
        self.post_message(self.Changed(self, name, value))
