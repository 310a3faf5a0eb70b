"""The swamla-tui Textual app: loading, themes, settings, global keys, pushing screens.

The chat itself is `swamla_tui.ui.screens.chat.ChatScreen`, the default screen: it gets
its dependencies (options, settings, data folder) through its constructor and owns the
chat's state. Threads: the model is loaded by `loader(progress)` in a worker, so the
first frame is on screen before torch is imported (nothing in `swamla_tui.ui` imports
torch or `swamla_tui.runtime.load`); the worker reports to the chat screen with messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.theme import Theme
from textual.worker import get_current_worker

from ..base.paths import data_dir
from ..base.safe_text import pasted_text
from ..chat.session import count_noun
from ..protocols import Loader
from .chat.palette import chat_commands
from .loading import load_model
from .notices import LiteralNotify
from .options import AppOptions
from .screens.chat import ChatScreen
from .settings import Settings
from .themes import DEFAULT_THEME, LIGHT_THEME, choose_theme, load_themes

__all__ = ["AppOptions", "SwamlaApp", "run_app"]


class SwamlaApp(LiteralNotify, App[int]):
    """Chat with a SWA-MLA checkpoint."""

    CSS_PATH = "app.tcss"
    TITLE = "swamla-tui"
    ENABLE_COMMAND_PALETTE = True
    # narrow terminals hide the sidebar (Ctrl+B still shows it)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (90, "-wide")]

    # Global keys, on every screen (the chat screen lists them among its own keys).
    BINDINGS = [
        Binding("ctrl+c", "interrupt", "Stop", show=False, priority=True),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, loader: Loader, options: AppOptions | None = None) -> None:
        super().__init__()
        self.loader = loader
        self.options = options = options if options is not None else AppOptions()
        self.data_dir = data_dir(options.data_dir)
        self.settings = Settings(self.data_dir)

        themes = load_themes()
        for theme in themes.themes:
            self.register_theme(theme)
        chosen, warning = choose_theme(
            options.theme, self.settings.get("theme"), set(self.available_themes)
        )
        self.theme = chosen
        self._theme_given = bool(options.theme) and warning is None
        self._start_warnings = themes.warnings + ([warning] if warning else [])
        self._chat_screen = ChatScreen(
            options, self.settings, self.data_dir, warnings=self._start_warnings
        )

    @property
    def chat_screen(self) -> ChatScreen:
        """The chat (the default screen, below any pushed one)."""
        return self._chat_screen

    @property
    def load_failed(self) -> str | None:
        return self._chat_screen.load_failed

    def get_default_screen(self) -> Screen[Any]:
        return self._chat_screen

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self._theme_given:  # --theme is remembered like a Ctrl+T choice
            self.settings.set("theme", self.theme)
        self._load_model()

    def _remember_theme(self, theme: Theme) -> None:
        self.settings.set("theme", theme.name)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load_model(self) -> None:
        load_model(self.loader, self._chat_screen.post_message, get_current_worker())

    async def on_event(self, event: events.Event) -> None:
        # Every paste passes here before the focused widget gets it (the chat input, the
        # batch view's ask line, the conversations filter, the command palette): its
        # control characters are dropped once for all of them.
        if isinstance(event, events.Paste) and not event.is_forwarded:
            event.text = pasted_text(event.text)
        await super().on_event(event)

    # -- global keys ---------------------------------------------------------------------

    def action_interrupt(self) -> None:
        """Ctrl+C: stop a reply; otherwise copy a selection; never quits."""
        chat = self._chat_screen
        if any(getattr(s, "interrupt", lambda: False)() for s in reversed(self.screen_stack)):
            return  # a screen's own run (the batch view) stopped
        if chat.generating:
            chat.action_stop()
            return
        selected = self.screen.get_selected_text() or getattr(self.focused, "selected_text", "")
        if selected:
            self.copy_to_clipboard(selected)
            self.notify(f"Copied {count_noun(len(selected), 'character')}.", timeout=2)
            return
        self.notify(
            "Nothing selected: drag over text to select it, or /copy copies the last reply."
            " Ctrl+Q quits.",
            timeout=3,
        )

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT_THEME if self.current_theme.dark else DEFAULT_THEME

    async def action_quit(self) -> None:
        if any(getattr(s, "quit_held", lambda: False)() for s in self.screen_stack):
            return  # a screen asked first (a batch run whose results are not saved)
        self._chat_screen.quit_app()

    # -- command palette -----------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from chat_commands(self._chat_screen, self.action_toggle_theme)
        yield from super().get_system_commands(screen)


def run_app(loader: Loader, options: AppOptions) -> int:
    """Run the full-screen app; returns the exit status (1 if the model failed to load)."""
    app = SwamlaApp(loader, options)
    result = app.run()
    if app.load_failed:
        return 1
    if isinstance(result, int):
        return result
    return app.return_code or 0
