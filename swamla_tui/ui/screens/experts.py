"""``/experts``: what a reply's MoE layers did, for checking dead or collapsed experts.

The numbers come from `base.experts.ExpertSummary` (the same summary ``--expert-stats``
writes): a heat grid of tokens per expert per layer (darker: fewer; a dot: never chosen),
then per layer the router's mean entropy, the entropy of the load over the experts, the
busiest expert's share and the experts never chosen; the Engram gates' means last.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ...base.experts import ExpertSummary, LayerStats

__all__ = ["ExpertsScreen", "heat_grid", "layer_table"]

_HEAT = ("#2b2d42", "#3d5a80", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51")
"""Cell backgrounds from a small share of the layer's busiest expert to all of it."""


def _cell_style(count: int, top: int) -> str:
    if count == 0:
        return "dim"
    level = 1 + min(len(_HEAT) - 2, int((len(_HEAT) - 1) * count / max(1, top)))
    return f"black on {_HEAT[level]}" if level >= 3 else f"white on {_HEAT[level]}"


def heat_grid(layers: tuple[LayerStats, ...], width: int = 88) -> Text:
    """Tokens per expert (columns) per layer (rows), in blocks of columns that fit `width`."""
    out = Text(end="")
    if not layers:
        return out
    n = max(st.n_experts for st in layers)
    cell = max(3, len(str(max(max(st.counts) for st in layers))) + 1)
    fit = max(8, (width - 10) // cell // 8 * 8)
    blocks = -(-n // fit)  # even blocks: 32 experts in two rows of 16, not 24 + 8
    per_line = -(-n // blocks // 8) * 8 if n > 8 else n
    for start in range(0, n, per_line):
        cols = range(start, min(n, start + per_line))
        out.append("expert   " + "".join(f"{e:>{cell}}" for e in cols) + "\n", style="bold")
        for st in layers:
            out.append(f"layer {st.layer:<3}")
            top = max(st.counts)
            for e in cols:
                c = st.counts[e] if e < st.n_experts else 0
                out.append(f"{c if c else '·':>{cell}}", style=_cell_style(c, top))
            out.append("\n")
    return out


def layer_table(s: ExpertSummary) -> Table:
    table = Table(expand=True, box=None, padding=(0, 1))
    for name in ("Layer", "Tokens", "Router H", "Load H / max", "Busiest", "Never chosen"):
        table.add_column(name, no_wrap=name != "Never chosen")
    for st in s.layers:
        e, share = st.busiest
        never = ", ".join(str(i) for i in st.never) if st.never else "none"
        table.add_row(
            str(st.layer),
            str(st.tokens),
            f"{st.router_entropy:.2f}",
            f"{st.load_entropy:.2f} / {st.max_entropy:.2f}",
            f"{e} ({100 * share:.0f}%)",
            f"{len(st.never)}: {never}" if st.never else never,
        )
    return table


class ExpertsScreen(ModalScreen[None]):
    """The summary of one reply (or run) in a closable box."""

    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, summary: ExpertSummary, title: str = "Inside the MoE") -> None:
        super().__init__(classes="dialog")
        self.summary = summary
        self.title_text = title

    def compose(self) -> ComposeResult:
        s = self.summary
        with Vertical() as box:
            box.border_title = self.title_text
            with VerticalScroll():
                yield Static(self._body(s), id="experts-body")
            yield Static("Esc / q: close", classes="dialog--footer")

    @staticmethod
    def _body(s: ExpertSummary) -> Group:
        parts: list[Text | Table] = []
        head = Text(f"{s.source}: {s.tokens} tokens", style="bold", end="")
        head.append(
            "   (the routing of the step that chose each token; H: entropy in nats)",
            style="dim",
        )
        parts.append(head)
        if s.layers:
            parts += [Text(""), heat_grid(s.layers), Text(""), layer_table(s)]
        if s.engram:
            gates = "   ".join(f"layer {layer}: {g:.3f}" for layer, g in s.engram)
            parts += [Text(""), Text("Engram mean gate   " + gates)]
        if not s.layers and not s.engram:
            parts.append(Text("This model has no MoE or Engram layers."))
        parts += [Text(n, style="dim") for n in s.notes]
        return Group(*parts)

    def action_close(self) -> None:
        self.dismiss(None)
