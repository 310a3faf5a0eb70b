"""A small focusable slider: a label and value on one line, a track below it.

Keyboard: left/right move one step, shift+left/right (or pageup/pagedown) a big step,
home/end jump to the ends, down/up move to the next/previous slider of the screen. Mouse: click anywhere on the widget to jump, drag to move.
Posts `Slider.Changed` whenever the value changes (also when set from code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


def _decimals(step: float) -> int:
    if float(step).is_integer():
        return 0
    text = f"{step:.10f}".rstrip("0")
    return len(text.split(".", 1)[1])


class Slider(Widget, can_focus=True):
    """A numeric slider between `minimum` and `maximum`, snapped to `step`."""

    DEFAULT_CSS = """
    Slider {
        height: 2;
        width: 1fr;
        padding: 0 1;
    }
    Slider > .slider--label { color: $text-muted; }
    Slider > .slider--value { color: $text; text-style: bold; }
    Slider > .slider--track { color: $foreground 45%; }
    Slider > .slider--fill { color: $primary-darken-1; }
    Slider > .slider--thumb { color: $primary; text-style: bold; }
    Slider:focus > .slider--label { color: $text; text-style: bold; }
    Slider:focus > .slider--fill { color: $accent-darken-1; }
    Slider:focus > .slider--thumb { color: $accent; }
    Slider.-disabled-look > .slider--thumb { color: $text-disabled; }
    """

    COMPONENT_CLASSES = {
        "slider--label",
        "slider--value",
        "slider--track",
        "slider--fill",
        "slider--thumb",
    }

    BINDINGS = [
        Binding("left", "step(-1)", "Decrease", show=False),
        Binding("right", "step(1)", "Increase", show=False),
        Binding("shift+left,pagedown", "big_step(-1)", "Decrease more", show=False),
        Binding("shift+right,pageup", "big_step(1)", "Increase more", show=False),
        Binding("home", "to_end(-1)", "Minimum", show=False),
        Binding("end", "to_end(1)", "Maximum", show=False),
        Binding("down", "neighbour(1)", "Next slider", show=False),
        Binding("up", "neighbour(-1)", "Previous slider", show=False),
    ]

    value: reactive[float] = reactive(0.0, init=False)

    @dataclass
    class Changed(Message):
        """The slider's value changed."""

        slider: Slider
        value: float

        @property
        def control(self) -> Slider:
            return self.slider

    def __init__(
        self,
        minimum: float,
        maximum: float,
        *,
        value: float | None = None,
        step: float = 1,
        big_step: float | None = None,
        label: str = "",
        value_format: str | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        if maximum < minimum:
            raise ValueError("maximum must be >= minimum")
        self.minimum = minimum
        self.maximum = maximum
        self.step = step
        self.big_step = big_step if big_step is not None else step * 10
        self.label = label
        self.decimals = _decimals(step)
        self.value_format = value_format or f"{{:.{self.decimals}f}}"
        self._dragging = False
        self.range_pending = False
        """True while the range is not known yet (max new tokens before the model has
        loaded): the track has no thumb, so it does not jump when `set_range` comes."""
        self.set_reactive(Slider.value, self.snap(minimum if value is None else value))

    # -- value handling -------------------------------------------------------------------

    @property
    def is_integer(self) -> bool:
        return self.decimals == 0 and float(self.minimum).is_integer()

    def snap(self, value: float) -> float:
        """Clamp to the range and snap to the step grid (anchored at `minimum`)."""
        if math.isnan(value):
            value = self.minimum
        value = min(max(value, self.minimum), self.maximum)
        if self.step > 0:
            steps = round((value - self.minimum) / self.step)
            value = self.minimum + steps * self.step
            value = min(max(value, self.minimum), self.maximum)
        value = round(value, self.decimals)
        return int(value) if self.is_integer else float(value)

    def validate_value(self, value: float) -> float:
        return self.snap(value)

    def watch_value(self, value: float) -> None:
        self.post_message(self.Changed(self, value))

    def set_range(self, minimum: float, maximum: float) -> None:
        """Change the range (e.g. max new tokens once the model is known); re-clamps."""
        self.minimum, self.maximum = minimum, max(minimum, maximum)
        self.range_pending = False
        self.value = self.snap(self.value)
        self.refresh()

    @property
    def fraction(self) -> float:
        span = self.maximum - self.minimum
        return 0.0 if span <= 0 else (self.value - self.minimum) / span

    def format_value(self) -> str:
        return self.value_format.format(self.value)

    # -- actions --------------------------------------------------------------------------

    def action_step(self, direction: int) -> None:
        self.value = self.snap(self.value + direction * self.step)

    def action_big_step(self, direction: int) -> None:
        self.value = self.snap(self.value + direction * self.big_step)

    def action_to_end(self, direction: int) -> None:
        self.value = self.maximum if direction > 0 else self.minimum

    def action_neighbour(self, direction: int) -> None:
        """Focus the next / previous slider shown on the screen (the first and last stay)."""
        shown = [s for s in self.screen.query(Slider) if s.display and s.focusable]
        if self in shown:
            i = shown.index(self) + direction
            if 0 <= i < len(shown):
                shown[i].focus()

    # -- mouse ----------------------------------------------------------------------------

    def _value_at(self, x: int) -> float:
        width = max(1, self.content_size.width)
        column = x - self.styles.gutter.left
        column = min(max(column, 0), width - 1)
        fraction = column / (width - 1) if width > 1 else 0.0
        return self.snap(self.minimum + fraction * (self.maximum - self.minimum))

    async def _on_mouse_down(self, event: events.MouseDown) -> None:
        event.stop()
        self.focus()
        self._dragging = True
        self.capture_mouse()
        self.value = self._value_at(event.x)

    async def _on_mouse_move(self, event: events.MouseMove) -> None:
        if self._dragging:
            event.stop()
            self.value = self._value_at(event.x)

    async def _on_mouse_up(self, event: events.MouseUp) -> None:
        if self._dragging:
            event.stop()
            self._dragging = False
            self.release_mouse()

    async def _on_click(self, event: events.Click) -> None:
        event.stop()

    # -- rendering ------------------------------------------------------------------------

    def render(self) -> Text:
        width = max(1, self.content_size.width)
        label_style = self.get_component_rich_style("slider--label")
        value_style = self.get_component_rich_style("slider--value")
        value_text = self.format_value()
        label = self.label[: max(0, width - len(value_text) - 1)]
        top = Text(label, style=label_style, no_wrap=True, end="")
        top.append(" " * max(1, width - len(label) - len(value_text)))
        top.append(value_text, style=value_style)

        track = Text(no_wrap=True, end="")
        if self.range_pending:
            track.append("┄" * width, style=self.get_component_rich_style("slider--track"))
            return Text("\n", no_wrap=True, end="").join([top, track])
        thumb = round(self.fraction * (width - 1))
        track.append("━" * thumb, style=self.get_component_rich_style("slider--fill"))
        track.append("●", style=self.get_component_rich_style("slider--thumb"))
        track.append(
            "─" * max(0, width - thumb - 1), style=self.get_component_rich_style("slider--track")
        )
        return Text("\n", no_wrap=True, end="").join([top, track])
