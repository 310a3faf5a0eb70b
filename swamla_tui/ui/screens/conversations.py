"""The conversation list (Ctrl+O, ``/conversations``, the palette): past transcripts with
their date, title, model and turns; open one in the chat, rename or delete it.

The rows and the changes come from `swamla_tui.chat.conversations` (Textual-free, unit
tested); this screen shows them and asks before deleting. It returns the transcript to
open, or None. The conversation open in the chat is marked and cannot be deleted here
(Ctrl+L starts a new one first), since the chat would write it again.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from ...base.errors import SwamlaError
from ...base.safe_text import visible
from ...chat.conversations import TITLE_MAX, ConversationInfo, Conversations
from ...chat.transcript import TranscriptBusy

__all__ = ["ConversationsScreen"]

KEYS = "Enter: open · r: rename · d: delete · Esc: close"


class ConversationsScreen(ModalScreen[Path | None]):
    """Returns the transcript to open in the chat (Enter), or None (Esc)."""

    DEFAULT_CSS = """
    ConversationsScreen DataTable { height: 1fr; }
    ConversationsScreen #conv-rename { display: none; }
    ConversationsScreen #conv-rename.-on { display: block; }
    ConversationsScreen #conv-status { height: auto; color: $text-muted; }
    ConversationsScreen #conv-status.-ask { color: $warning; text-style: bold; }
    """

    BINDINGS = [
        Binding("escape", "close", "Close", tooltip="Back to the chat"),
        Binding("r", "rename", "Rename", tooltip="Give the highlighted conversation a title"),
        Binding("d,delete", "delete", "Delete", tooltip="Delete it (asks first)"),
        Binding("y", "confirm", "Yes", show=False),
        Binding("n", "cancel", "No", show=False),
    ]

    def __init__(self, conversations: Conversations, current: Path | None = None) -> None:
        super().__init__(classes="dialog")
        self.conversations = conversations
        self.current = current
        self.rows: list[ConversationInfo] = []
        self.asking: ConversationInfo | None = None
        """The conversation a delete waits for y / n on."""

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Conversations"
            yield DataTable(cursor_type="row", zebra_stripes=True, id="conv-table")
            yield Input(
                placeholder="New title — Enter saves (empty: the first message), Esc cancels",
                max_length=TITLE_MAX,
                id="conv-rename",
            )
            yield Static("", id="conv-status")
            yield Static(KEYS, classes="dialog--footer")

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#conv-table", DataTable)

    @property
    def rename_input(self) -> Input:
        return self.query_one("#conv-rename", Input)

    @property
    def status(self) -> Static:
        return self.query_one("#conv-status", Static)

    def on_mount(self) -> None:
        table = self.table
        table.add_columns("Date", "Title", "Model", "Turns")
        self.reload()
        table.focus()

    def reload(self, keep: int | None = None) -> None:
        """Read the list again; the cursor stays on row `keep` (or the nearest)."""
        table = self.table
        row = table.cursor_row if keep is None else keep
        table.clear()
        self.rows = self.conversations.list()
        for info in self.rows:
            mark = "● " if self.current is not None and info.path == self.current else ""
            table.add_row(
                Text(info.updated.strftime("%Y-%m-%d %H:%M")),
                Text(mark + visible(info.title)),
                Text(visible(info.model.name) if info.model else "?"),
                Text(str(info.turns), justify="right"),
            )
        if self.rows:
            table.move_cursor(row=min(max(row, 0), len(self.rows) - 1))
        self.show_status()

    def highlighted(self) -> ConversationInfo | None:
        if not self.rows:
            return None
        return self.rows[min(self.table.cursor_row, len(self.rows) - 1)]

    def show_status(self, text: str | None = None, *, ask: bool = False) -> None:
        """`text`, or what the highlighted row is (its id for ``--resume``)."""
        status = self.status
        status.set_class(ask, "-ask")
        if text is None:
            info = self.highlighted()
            if info is None:
                text = "No conversations yet: each finished reply is saved as you chat."
            else:
                model = info.model.describe() if info.model else "not recorded"
                text = f"swamla-tui --resume {info.id} · model: {model}"
                if info.path == self.current:
                    text += " · open in the chat"
        status.update(Text(visible(text)))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.asking is None:
            self.show_status()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        info = self.highlighted()
        if info is not None and self.asking is None:
            self.dismiss(info.path)

    # -- rename ----------------------------------------------------------------------

    def action_rename(self) -> None:
        info = self.highlighted()
        if info is None or self.asking is not None:
            return
        box = self.rename_input
        box.value = info.title if info.renamed else ""
        box.add_class("-on")
        box.focus()
        self.show_status(f"Rename “{info.title}”")

    @on(Input.Submitted, "#conv-rename")
    def _renamed(self, event: Input.Submitted) -> None:
        info = self.highlighted()
        self._close_rename()
        if info is None:
            return
        try:
            title = self.conversations.rename(info.path, event.value)
        except SwamlaError as exc:
            self.show_status(str(exc), ask=True)
            return
        self.reload()
        self.show_status(f"Renamed to “{title}”." if title else "Title: the first message again.")

    def _close_rename(self) -> bool:
        box = self.rename_input
        if not box.has_class("-on"):
            return False
        box.remove_class("-on")
        self.table.focus()
        return True

    # -- delete ----------------------------------------------------------------------

    def action_delete(self) -> None:
        info = self.highlighted()
        if info is None or self.rename_input.has_class("-on"):
            return
        if info.path == self.current:
            self.show_status(
                "This conversation is open in the chat: Ctrl+L starts a new one, then it "
                "can be deleted here.",
                ask=True,
            )
            return
        self.asking = info
        self.show_status(
            f"Delete “{info.title}” ({info.turns} turns)? y: delete · n: keep", ask=True
        )

    def action_confirm(self) -> None:
        info, self.asking = self.asking, None
        if info is None:
            return
        try:
            self.conversations.delete(info.path)
        except TranscriptBusy:
            self.show_status("It is open in another swamla-tui: not deleted.", ask=True)
            return
        except SwamlaError as exc:
            self.show_status(str(exc), ask=True)
            return
        self.reload()
        self.show_status(f"Deleted “{info.title}”.")

    def action_cancel(self) -> None:
        if self.asking is not None:
            self.asking = None
            self.show_status("Kept.")

    def action_close(self) -> None:
        if self._close_rename():
            self.show_status()
        elif self.asking is not None:
            self.action_cancel()
        else:
            self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Letters type into the title while it is edited; y / n only answer a delete."""
        if self.rename_input.has_class("-on") and action in ("rename", "delete", "confirm"):
            return False
        if action in ("confirm", "cancel"):
            return self.asking is not None
        return True
