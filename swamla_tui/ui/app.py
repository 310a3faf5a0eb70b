"""The swamla-tui Textual app: chat pane, input, sampling sidebar, status bar.

The model is loaded by `loader(progress)` in a thread worker, so the first frame is on
screen before torch is imported; nothing in `swamla_tui.ui` imports torch or
`swamla_tui.loaded` at module level. Replies are generated in a thread worker; the
worker only appends text pieces to a buffer, which the UI drains on a 1/30 s timer, so
the screen refreshes at most ~30 times a second whatever the token rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header
from textual.worker import get_current_worker

from .. import commands as cmds
from ..conversation import (
    STOP_STRINGS,
    Conversation,
    Transcript,
    TranscriptStore,
    cut_reply,
    save_conversation,
)
from ..errors import SwamlaError
from ..params import RANGES, SamplingParams
from .messages import (
    ContextTrimmed,
    GenerationDone,
    LoadFailed,
    LoadProgress,
    ModelLoaded,
    one_line,
)
from .screens.help import HelpScreen
from .settings import Settings, resolve_data_dir
from .themes import DEFAULT_THEME, LIGHT_THEME, bundled_themes, resolve_theme_name
from .widgets.chat_log import ChatLog
from .widgets.chat_message import ChatMessage
from .widgets.prompt_input import PromptInput
from .widgets.sampling_sidebar import SamplingSidebar
from .widgets.status_bar import StatusBar

if TYPE_CHECKING:  # pragma: no cover
    from ..loaded import LoadedModel

Loader = Callable[[Callable[[str], None]], "LoadedModel"]

REFRESH_HZ = 30
FINISH_NOTES = {"length": "max tokens reached", "cancelled": "stopped"}


class SwamlaApp(App[int]):
    """Chat with a SWA-MLA checkpoint."""

    CSS_PATH = "app.tcss"
    TITLE = "swamla-tui"
    ENABLE_COMMAND_PALETTE = True
    # narrow terminals hide the sidebar (Ctrl+B still shows it)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (90, "-wide")]

    BINDINGS = [
        Binding("escape", "stop", "Stop", tooltip="Stop the reply in progress"),
        Binding("ctrl+c", "interrupt", "Stop", show=False, priority=True),
        Binding("f1", "help", "Help", tooltip="Keys and slash commands"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+l", "clear", "Clear", tooltip="Start a new conversation"),
        Binding("ctrl+r", "retry", "Retry", tooltip="Generate the last reply again"),
        Binding("ctrl+s", "save", "Save", tooltip="Save the conversation as Markdown"),
        Binding("ctrl+t", "toggle_theme", "Theme", tooltip="Toggle dark / light"),
        Binding("ctrl+b", "toggle_sidebar", "Sliders", tooltip="Show / hide the sampling sidebar"),
        Binding("f2", "focus_sliders", "Focus sliders", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Leave the app"),
    ]

    def __init__(
        self,
        loader: Loader,
        *,
        params: SamplingParams | None = None,
        system_prompt: str | None = None,
        theme: str | None = None,
        resume: bool = False,
        mode: str = "chat",
        prompts_file: str | None = None,
        notice: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.loader = loader
        self.params = params if params is not None else SamplingParams()
        self.mode = mode
        self.prompts_file = prompts_file
        self.start_notice = notice
        self.resume = resume
        self.data_dir = resolve_data_dir(data_dir)
        self.settings = Settings(self.data_dir)
        self.store = TranscriptStore(self.data_dir / "transcripts")
        self.conversation = Conversation()
        self.conversation.set_system(system_prompt)
        self._system_given = system_prompt is not None
        self.transcript: Transcript | None = None

        self.lm: Any = None
        self.load_failed: str | None = None
        self.generating = False
        self._stream: Any = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._raw_reply = ""
        self._reply_widget: ChatMessage | None = None
        self._user_widget: ChatMessage | None = None
        self._pending_user = ""
        self._turn_widgets: list[tuple[ChatMessage, ChatMessage]] = []
        self._load_message: ChatMessage | None = None
        self.last_tokens_per_second: float | None = None

        for item in bundled_themes():
            self.register_theme(item)
        self._theme_warning: str | None = None
        chosen = resolve_theme_name(theme, set(self.available_themes))
        if theme and chosen is None:
            names = ", ".join(sorted(self.available_themes))
            self._theme_warning = f"Unknown theme {theme!r}; available: {names}"
        if chosen is None:
            chosen = resolve_theme_name(self.settings.get("theme"), set(self.available_themes))
        self.theme = chosen or DEFAULT_THEME

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        with Horizontal(id="main"):
            with Vertical(id="chat-column"):
                yield ChatLog(id="chat")
                yield PromptInput(
                    completer=cmds.complete,
                    placeholder="Message the model — Enter sends, Ctrl+J new line, /help",
                    id="prompt",
                )
            yield SamplingSidebar(self.params, id="sidebar")
        yield StatusBar(id="status")
        yield Footer()

    @property
    def chat(self) -> ChatLog:
        return self.query_one("#chat", ChatLog)

    @property
    def prompt_input(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def sidebar(self) -> SamplingSidebar:
        return self.query_one("#sidebar", SamplingSidebar)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        self._flush_timer = self.set_interval(1 / REFRESH_HZ, self._drain_tokens, pause=True)
        self.prompt_input.focus()
        self.status_bar.status = "Loading model…"
        self._load_message = self.chat.add_message("notice", "Loading model…")
        if self.start_notice:
            self.add_notice(self.start_notice)
        if self._theme_warning:
            self.add_notice(self._theme_warning, error=True)
        if self.resume:
            self._resume_last()
        self._load_model()

    def on_unmount(self) -> None:
        """Leaving: stop a reply in progress so its thread ends within one token."""
        self._cancel.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def _remember_theme(self, theme: Any) -> None:
        self.settings.set("theme", theme.name)

    # -- loading --------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load_model(self) -> None:
        """Run the loader; it runs in a daemon thread so quitting mid-load never waits."""
        worker = get_current_worker()
        outcome: dict[str, Any] = {}

        def progress(text: str) -> None:
            if not worker.is_cancelled:
                self.post_message(LoadProgress(str(text)))

        def target() -> None:
            try:
                outcome["lm"] = self.loader(progress)
            except BaseException as exc:  # noqa: BLE001 - shown to the user, app stays up
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="swamla-load", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.05)
            if worker.is_cancelled:
                return
        if "error" in outcome:
            self.post_message(LoadFailed(one_line(outcome["error"])))
        else:
            self.post_message(ModelLoaded(outcome.get("lm")))

    def on_load_progress(self, message: LoadProgress) -> None:
        if self.lm is None and self.load_failed is None:
            self.status_bar.status = message.text
            if self._load_message is not None:
                self._load_message.set_text(message.text)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self.lm = lm = message.lm
        self.status_bar.status = "Ready"
        self.status_bar.model = _summary(lm)
        self.sub_title = _summary(lm)
        self.status_bar.set_context(self._context_used(), lm.max_length)
        self.sidebar.set_max_length(int(lm.max_length))
        if self._load_message is not None:
            self._load_message.set_text(
                f"Loaded {_summary(lm)}. Type a message; /help lists the commands."
            )
        if self.mode == "batch":
            self.open_batch(self.prompts_file)

    def on_load_failed(self, message: LoadFailed) -> None:
        self.load_failed = message.reason
        self.status_bar.status = "Load failed — Ctrl+Q quits"
        self.status_bar.add_class("-error")
        if self._load_message is not None:
            self._load_message.remove()
            self._load_message = None
        self.add_notice(f"Could not load the model: {message.reason}", error=True)

    def _context_used(self) -> int:
        if self.lm is None:
            return 0
        try:
            return len(self.lm.encode(self.conversation.history_text()))
        except Exception:
            return 0

    # -- chat helpers ---------------------------------------------------------------------

    def add_notice(self, text: str, *, error: bool = False) -> ChatMessage:
        return self.chat.add_message("error" if error else "notice", text)

    def _resume_last(self) -> None:
        try:
            path = self.store.latest()
            if path is None:
                self.add_notice("No earlier conversation to resume.")
                return
            conversation = TranscriptStore.load(path)
            self.transcript = self.store.reopen(path)
        except SwamlaError as exc:
            self.add_notice(f"Could not resume: {exc}", error=True)
            return
        system = self.conversation.system
        self.conversation = conversation
        if self._system_given and system != conversation.system:
            self.conversation.set_system(system)
            self._record(lambda t: t.record_system(self.conversation.system))
        for turn in conversation.turns:
            user = self.chat.add_message("user", turn.user)
            reply = self.chat.add_message("assistant", turn.assistant)
            if turn.stopped:
                reply.mark("stopped", stopped=True)
            self._turn_widgets.append((user, reply))
        self.add_notice(f"Resumed {len(conversation.turns)} turn(s) from {path.name}.")

    def _record(self, action: Callable[[Transcript], None], *, create: bool = False) -> None:
        """Write one transcript event; the transcript file is created by the first turn."""
        if self.transcript is None:
            if not create:
                return
            meta = {"source": getattr(self.lm, "source", None)}
            self.transcript = self.store.new(system=self.conversation.system, meta=meta)
        try:
            action(self.transcript)
        except SwamlaError as exc:
            self.add_notice(str(exc), error=True)

    # -- input ----------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    def _on_submitted(self, event: PromptInput.Submitted) -> None:
        line = event.value
        if cmds.is_command(line):
            self.run_command(line)
        else:
            self.send(cmds.literal_text(line))

    def send(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self.generating:
            self.add_notice("A reply is in progress — press Esc to stop it first.")
            return
        if self.lm is None:
            if self.load_failed:
                self.add_notice(f"No model: {self.load_failed}", error=True)
            else:
                self.add_notice("The model is still loading — try again in a moment.")
            return
        self._user_widget = self.chat.add_message("user", text)
        self._reply_widget = self.chat.add_message("assistant")
        self._reply_widget.set_streaming(True)
        self.chat.anchor()
        self._pending_user = text
        self._raw_reply = ""
        self._pending.clear()
        self._cancel.clear()
        self._stream = None
        self.generating = True
        self.status_bar.status = "Generating…"
        self.status_bar.add_class("-busy")
        self.refresh_bindings()
        self._flush_timer.resume()
        self._generate(text)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate(self, user_text: str) -> None:
        lm = self.lm
        worker = get_current_worker()
        stream = None
        text_parts: list[str] = []
        try:
            budget = int(lm.max_length) - int(self.params.max_new_tokens)
            dropped = self.conversation.fit(lambda t: len(lm.encode(t)), max(1, budget), user_text)
            if dropped:
                self.post_message(ContextTrimmed(dropped))
            prompt = self.conversation.prompt_for(user_text)
            stream = lm.stream(prompt, self.params, stop=STOP_STRINGS)
            self._stream = stream
            if self._cancel.is_set():
                stream.cancel()
            for piece in stream:
                text_parts.append(piece)
                with self._lock:
                    self._pending.append(piece)
                if self._cancel.is_set() or worker.is_cancelled:
                    stream.cancel()
        except BaseException as exc:  # noqa: BLE001 - shown as a notice, history survives
            self.post_message(GenerationDone(stream, "".join(text_parts), one_line(exc)))
            return
        self.post_message(GenerationDone(stream, "".join(text_parts)))

    def _drain_tokens(self) -> None:
        """Drain the token buffer into the reply (runs at most REFRESH_HZ times a second)."""
        with self._lock:
            pieces, self._pending = self._pending, []
        if pieces and self._reply_widget is not None:
            self._raw_reply += "".join(pieces)
            self._reply_widget.set_text(cut_reply(self._raw_reply))
        stream = self._stream
        if stream is not None and self.lm is not None:
            tps = getattr(stream, "tokens_per_second", None)
            if tps:
                self.status_bar.set_speed(tps, live=self.generating)
            used = getattr(stream, "context_tokens", None)
            if used is not None:
                self.status_bar.set_context(int(used), int(self.lm.max_length))

    def on_context_trimmed(self, message: ContextTrimmed) -> None:
        n = message.dropped
        self.add_notice(
            f"The conversation outgrew the context: the oldest {n} turn{'s' if n != 1 else ''}"
            " no longer reach the model."
        )

    def on_generation_done(self, message: GenerationDone) -> None:
        self._drain_tokens()
        self._flush_timer.pause()
        stream = message.stream
        self._raw_reply = message.text or self._raw_reply
        reply = self._reply_widget
        user = self._user_widget
        self.generating = False
        self._stream = None
        self.status_bar.remove_class("-busy")
        reason = getattr(stream, "finish_reason", None)
        stopped = self._cancel.is_set() or reason == "cancelled"
        tps = getattr(stream, "tokens_per_second", None)
        if tps:
            self.last_tokens_per_second = float(tps)
            self.status_bar.set_speed(float(tps))
        if message.error is not None:
            self.status_bar.status = "Generation failed"
            for widget in (reply, user):
                if widget is not None:
                    widget.remove()
            text = f"Generation failed: {message.error}"
            # give the message back so it can be sent again
            if not self.prompt_input.text:
                self.prompt_input.load_text(self._pending_user)
                self.prompt_input.move_cursor(self.prompt_input.document.end)
                text += " — your message is back in the input"
            self.add_notice(text, error=True)
        else:
            turn = self.conversation.add_turn(self._pending_user, self._raw_reply, stopped)
            note = "stopped" if stopped else FINISH_NOTES.get(reason or "", "")
            if reply is not None:
                reply.set_text(turn.assistant)
                reply.mark(note, stopped=stopped)
                if user is not None:
                    self._turn_widgets.append((user, reply))
            self._record(lambda t: t.append_turn(turn), create=True)
            self.status_bar.status = "Stopped" if stopped else "Ready"
            if stream is not None and self.lm is not None:
                used = getattr(stream, "context_tokens", None)
                if used is not None:
                    self.status_bar.set_context(int(used), int(self.lm.max_length))
        self._reply_widget = self._user_widget = None
        self.refresh_bindings()

    # -- slash commands -------------------------------------------------------------------

    def run_command(self, line: str) -> None:
        limit = int(self.lm.max_length) if self.lm is not None else int(RANGES["max_new_tokens"][1])
        try:
            command = cmds.parse_command(line, max_new_tokens_limit=limit)
        except cmds.CommandError as exc:
            self.add_notice(str(exc), error=True)
            return
        handler = getattr(self, f"_cmd_{command.name}", None)
        if handler is None:  # pragma: no cover - every COMMANDS entry has a handler
            self.add_notice(f"/{command.name} is not available here", error=True)
            return
        handler(command)

    def _busy(self) -> bool:
        if self.generating:
            self.add_notice("A reply is in progress — press Esc to stop it first.")
        return self.generating

    def _cmd_quit(self, command: cmds.Command) -> None:
        self.action_quit()

    _cmd_exit = _cmd_quit

    def _cmd_help(self, command: cmds.Command) -> None:
        if command.value:
            spec = cmds.lookup(str(command.value))
            if spec is not None:
                self.add_notice(f"{spec.usage} — {spec.help}")
                return
        self.action_help()

    def _cmd_clear(self, command: cmds.Command) -> None:
        self.action_clear()

    def _cmd_retry(self, command: cmds.Command) -> None:
        self.action_retry()

    def _cmd_undo(self, command: cmds.Command) -> None:
        if self._busy():
            return
        turn = self.conversation.undo()
        if turn is None:
            self.add_notice("Nothing to undo.")
            return
        if self._turn_widgets:
            for widget in self._turn_widgets.pop():
                widget.remove()
        self._record(lambda t: t.record_undo())
        self._update_context()
        self.add_notice("Removed the last exchange.")

    def _set_param(self, name: str, value: object) -> None:
        setattr(self.params, name, value)
        stream = self._stream
        if stream is not None and getattr(stream, "params", None) is not self.params:
            setattr(stream.params, name, value)
        if name in ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens"):
            self.sidebar.set_value(name, value)  # type: ignore[arg-type]

    def _value_command(self, command: cmds.Command) -> None:
        name = command.param
        assert name is not None
        label = command.spec.name
        if command.shows:
            lo, hi = RANGES[name]
            if name == "max_new_tokens" and self.lm is not None:
                hi = self.lm.max_length
            self.add_notice(f"{label} = {_fmt(getattr(self.params, name))}  (range {lo:g}–{hi:g})")
            return
        self._set_param(name, command.value)
        self.add_notice(f"{label} set to {_fmt(command.value)}")

    _cmd_temp = _cmd_topk = _cmd_topp = _cmd_reppen = _cmd_max = _value_command

    def _cmd_seed(self, command: cmds.Command) -> None:
        if command.shows:
            seed = self.params.seed
            self.add_notice(f"seed = {'off' if seed is None else seed}")
            return
        self._set_param("seed", None if command.clear else command.value)
        self.add_notice("seed off" if command.clear else f"seed set to {command.value}")

    def _cmd_system(self, command: cmds.Command) -> None:
        if command.shows:
            system = self.conversation.system
            self.add_notice(f"system prompt: {system!r}" if system else "system prompt: off")
            return
        if self._busy():
            return
        self.conversation.set_system(None if command.clear else str(command.value))
        self._record(lambda t: t.record_system(self.conversation.system))
        self._update_context()
        self.add_notice("system prompt cleared" if command.clear else "system prompt set")

    def _cmd_save(self, command: cmds.Command) -> None:
        self._save(str(command.value) if command.value else None)

    def _cmd_info(self, command: cmds.Command) -> None:
        if self.lm is None:
            self.add_notice(self.load_failed or "The model is still loading.")
            return
        try:
            card = self.lm.card()
        except Exception as exc:
            self.add_notice(f"No model card: {one_line(exc)}", error=True)
            return
        width = max((len(k) for k in card), default=0)
        self.add_notice("\n".join(f"{k:<{width}}  {v}" for k, v in card.items()))

    def _cmd_batch(self, command: cmds.Command) -> None:
        self.open_batch(str(command.value) if command.value else None)

    # -- actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return True if self.generating else None
        return True

    def action_stop(self) -> None:
        if not self.generating:
            return
        self._cancel.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()
        self.status_bar.status = "Stopping…"

    def action_interrupt(self) -> None:
        """Ctrl+C: stop a reply; otherwise copy a selection; never quits."""
        if self.generating:
            self.action_stop()
            return
        focused = self.focused
        selected = getattr(focused, "selected_text", "")
        if selected:
            self.copy_to_clipboard(selected)
            return
        self.notify("Ctrl+Q quits.", timeout=2)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_clear(self) -> None:
        if self._busy():
            return
        had_turns = bool(self.conversation.turns)
        self.conversation.clear()
        self._turn_widgets.clear()
        self._load_message = None
        self.chat.remove_children()
        if had_turns:
            self._record(lambda t: t.record_clear())
        self._update_context()
        self.status_bar.set_speed(None)
        self.add_notice("New conversation.")

    def action_retry(self) -> None:
        if self._busy():
            return
        last = self.conversation.last_user()
        if last is None:
            self.add_notice("Nothing to retry.")
            return
        self.conversation.undo()
        if self._turn_widgets:
            for widget in self._turn_widgets.pop():
                widget.remove()
        self._record(lambda t: t.record_undo())
        self.send(last)

    def action_save(self) -> None:
        self._save(None)

    def _save(self, path: str | None) -> None:
        if not self.conversation.turns:
            self.add_notice("Nothing to save yet.")
            return
        try:
            written = save_conversation(
                self.conversation, path, directory=self.data_dir / "exports"
            )
        except SwamlaError as exc:
            self.add_notice(str(exc), error=True)
            return
        self.add_notice(f"Saved to {written}")

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT_THEME if self.current_theme.dark else DEFAULT_THEME

    def action_toggle_sidebar(self) -> None:
        self.sidebar.display = not self.sidebar.display

    def action_focus_sliders(self) -> None:
        self.sidebar.display = True
        self.sidebar.slider("temperature").focus()

    def action_quit(self) -> None:  # type: ignore[override]
        if self.generating:
            self._cancel.set()
            if self._stream is not None:
                self._stream.cancel()
        code = 1 if self.load_failed else 0
        self.exit(code, return_code=code)

    def _update_context(self) -> None:
        if self.lm is not None:
            self.status_bar.set_context(self._context_used(), int(self.lm.max_length))

    # -- sliders --------------------------------------------------------------------------

    @on(SamplingSidebar.Changed)
    def _on_sampling_changed(self, event: SamplingSidebar.Changed) -> None:
        stream = self._stream
        if stream is not None and getattr(stream, "params", None) is not self.params:
            setattr(stream.params, event.name, event.value)

    # -- batch hook -----------------------------------------------------------------------

    def open_batch(self, path: str | None = None) -> None:
        """Push the batch view (`swamla_tui.ui.screens.batch.BatchScreen`) if present."""
        try:
            from .screens.batch import BatchScreen  # type: ignore[import-not-found]
        except ImportError:
            self.add_notice("The batch view is not available in this build.", error=True)
            return
        if self.lm is None:
            self.add_notice(self.load_failed or "The model is still loading.")
            return
        self.push_screen(
            BatchScreen(lm=self.lm, params=self.params.copy(), path=path),
            callback=self._batch_closed,
        )

    def _batch_closed(self, prompt: str | None) -> None:
        """The batch view hands back a prompt (key `c`): put it in the chat input."""
        if not prompt:
            return
        box = self.prompt_input
        box.load_text(prompt)
        box.move_cursor(box.document.end)
        box.focus()

    # -- command palette ------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("Clear conversation", "Start a new conversation", self.action_clear)
        yield SystemCommand("Retry", "Generate the last reply again", self.action_retry)
        yield SystemCommand(
            "Save conversation", "Save as Markdown in the data folder", self.action_save
        )
        yield SystemCommand("Stop reply", "Stop the reply in progress", self.action_stop)
        yield SystemCommand(
            "Toggle theme", "Switch between dark and light", self.action_toggle_theme
        )
        yield SystemCommand("Help", "Keys and slash commands", self.action_help)
        yield SystemCommand(
            "Batch run", "Run every prompt of a file", lambda: self.open_batch(None)
        )
        yield SystemCommand("Model info", "Show the model card", lambda: self.run_command("/info"))
        yield from super().get_system_commands(screen)


def _summary(lm: Any) -> str:
    try:
        return str(lm.summary())
    except Exception:
        return str(getattr(lm, "source", "model"))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_app(
    loader: Loader,
    *,
    params: SamplingParams,
    system_prompt: str | None = None,
    theme: str | None = None,
    resume: bool = False,
    mode: str = "chat",
    prompts_file: str | None = None,
    notice: str | None = None,
    data_dir: Path | None = None,
) -> int:
    """Run the full-screen app; returns the exit status (1 if the model failed to load)."""
    app = SwamlaApp(
        loader,
        params=params,
        system_prompt=system_prompt,
        theme=theme,
        resume=resume,
        mode=mode,
        prompts_file=prompts_file,
        notice=notice,
        data_dir=data_dir,
    )
    result = app.run()
    if app.load_failed:
        return 1
    if isinstance(result, int):
        return result
    return app.return_code or 0
