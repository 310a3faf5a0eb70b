"""The chat screen: conversation, input, sampling sidebar, status bar, and the chat's keys.

`ChatScreen(options, settings, data_dir)` is the app's default screen; it owns the chat's
state (the session, the model once loaded, the turn widgets, the reply, model B, the
inspector) and hands its helpers (`swamla_tui.ui.chat`) itself, never the App. The App
keeps what only an App does (loading, themes, settings, global keys, pushing screens):
its load worker posts `LoadProgress` / `ModelLoaded` / `LoadFailed` here.

One piece at ~690 lines (what `SwamlaApp` was before the move): the Screen subclass itself
(bindings, layout, reactives and their watchers, message handlers, actions), which Textual
wants on one class; the reply pipeline, the slash commands, the inspector, model B, /ppl
and the palette are their own modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header

from ...base.errors import SwamlaError
from ...base.params import SamplingParams
from ...base.safe_text import visible
from ...base.timings import ReplyTimings
from ...batch.prompts import load_batch_prompts
from ...chat.commands import parse as cmds
from ...chat.conversation import Conversation
from ...chat.conversations import Conversations, ModelRef
from ...chat.session import ChatSession, context_usage
from ...chat.template import chat_format_of
from ...chat.transcript import TranscriptStore
from ...protocols import ChatModel, Model
from ..chat.history import ConversationHistory
from ..chat.inspector import InspectorController, start_probs
from ..chat.model_switch import ModelSwitch, SwitchDone, SwitchProgress
from ..chat.ppl import PerplexityRunner
from ..chat.reply import ReplyController
from ..chat.second_model import SecondModel, model_name
from ..chat.slash import SlashCommands
from ..messages import (
    ContextCounted,
    GenerationDone,
    LoadFailed,
    LoadProgress,
    ModelLoaded,
    ReplyStarted,
    ScoringDone,
    ScoringProgress,
    TurnPlanned,
)
from ..model_header import model_header, model_summary
from ..notices import LiteralNotify
from ..options import AppOptions
from ..settings import (
    REMEMBERED,
    Settings,
    forget_params,
    remember_param,
    remembered_params,
)
from ..widgets.chat_log import ChatLog
from ..widgets.chat_message import ChatMessage
from ..widgets.prompt_input import PromptInput
from ..widgets.sampling_sidebar import SamplingSidebar
from ..widgets.status_bar import StatusBar
from ..widgets.token_details import TokenDetails
from .batch import BatchScreen
from .conversations import ConversationsScreen
from .experts import ExpertsScreen
from .help import HelpScreen

__all__ = ["ChatScreen"]

BUSY = "A reply is in progress — press Esc to stop it first."
HELD = (
    "A reply is in progress: your message stays in the input — Enter sends it when the"
    " reply is done (Esc stops it)."
)
HELD_LOADING = (
    "The model is still loading: your message stays in the input — Enter sends it once"
    " the model is loaded."
)
HELD_FAILED = "No model: {reason} — your message stays in the input (Ctrl+Q quits)."


class ChatScreen(LiteralNotify, Screen[None]):
    """Chat with a SWA-MLA checkpoint."""

    # Ctrl+C, Ctrl+T and Ctrl+Q are global keys (the App binds them on every screen), listed
    # here too so the footer and the help show them in their place: Quit first in the
    # footer, last in the help.
    BINDINGS = [
        Binding("ctrl+q", "app.quit", "Quit", priority=True, tooltip="Leave the app"),
        Binding("escape", "stop", "Stop", tooltip="Stop the reply (the partial reply stays)"),
        Binding(
            "ctrl+c",
            "app.interrupt",
            "Stop",
            show=False,
            priority=True,
            tooltip="Stop the reply; when none runs, copy the selection (never quits)",
        ),
        Binding("f1", "help", "Help", tooltip="This help (? when the input is not focused)"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+b", "toggle_sidebar", "Sliders", tooltip="Show / hide the sampling sidebar"),
        Binding("ctrl+l", "clear", "Clear", tooltip="Start a new conversation"),
        Binding("ctrl+r", "retry", "Retry", tooltip="Generate the last reply again"),
        Binding("ctrl+s", "save", "Save", tooltip="Save the conversation as Markdown"),
        Binding(
            "ctrl+o",
            "conversations",
            "Chats",
            show=False,
            tooltip="Past conversations: open, rename, delete (/conversations)",
        ),
        Binding("ctrl+t", "app.toggle_theme", "Theme", tooltip="Toggle dark / light"),
        Binding("f3", "toggle_probs", "Probs", show=False, tooltip="Token probabilities (/probs)"),
        Binding("f4", "inspect", "Inspect", show=False, tooltip="Inspect the last reply's tokens"),
        Binding(
            "f2",
            "focus_sliders",
            "Focus sliders",
            show=False,
            tooltip="Focus the sampling sliders (F2 or Esc again: back to the input)",
        ),
    ]

    replying: reactive[str] = reactive("", bindings=True)
    """Who generates now: "" nobody, "A" a reply, "branch" an inspector branch (on A), "B"
    B's ``/compare`` answer. One watcher keeps the status bar and the bindings in step."""
    markdown: reactive[bool] = reactive(False, init=False)
    """Replies rendered as Markdown (``/markdown``, remembered); raw text by default."""
    probs: reactive[bool] = reactive(False, init=False)
    """Token probabilities recorded and shown (``/probs``, F3; remembered)."""

    def __init__(
        self,
        options: AppOptions,
        settings: Settings,
        data_dir: Path,
        warnings: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.options = options
        self._start_warnings = list(warnings)
        self.settings = settings
        self.data_dir = data_dir
        self.params: SamplingParams = options.params
        remembered_params(settings, self.params, options.params_given)
        self.session = ChatSession(
            TranscriptStore(data_dir / "transcripts"),
            system=options.system_prompt,
            report=self._report_error,
        )
        self.lm: Model | None = None
        self.load_failed: str | None = None
        self.last_batch: BatchScreen | None = None
        """The last batch view opened (its rows outlive it: `reopen_batch`)."""
        self.turn_widgets: list[tuple[ChatMessage, ChatMessage]] = []
        """(user, reply) widgets of each turn shown, for /undo and /retry."""
        self._load_message: ChatMessage | None = None
        self.set_reactive(ChatScreen.markdown, bool(settings.get("markdown", False)))
        self.set_reactive(ChatScreen.probs, start_probs(options, settings))

        self.reply = ReplyController(self)
        self.compare = SecondModel(self)  # model B: --compare, /compare
        self.inspector = InspectorController(self)
        self.ppl = PerplexityRunner(self)
        self.switch = ModelSwitch(self)  # /model
        self.history = ConversationHistory(self)  # --resume, the conversation list
        self.slash = SlashCommands(self, _ChatTools(self))

    @property
    def conversation(self) -> Conversation:
        return self.session.conversation

    @property
    def generating(self) -> bool:
        """A reply is being generated: A's (or an inspector branch), or B's ``/compare``."""
        return bool(self.replying)

    def watch_replying(self, old: str, new: str) -> None:
        """The status bar follows A's replies and branches (B's answer leaves it as it is);
        the bindings (Esc: Stop) follow every reply (``bindings=True``)."""
        bar = self.status_bar
        if new in ("A", "branch"):
            bar.status = "Generating…"
            bar.add_class("-busy")
        else:
            bar.remove_class("-busy")

    def watch_markdown(self, on: bool) -> None:
        chat = self.chat
        chat.markdown = on
        for message in chat.messages():
            message.set_markdown(on)

    def watch_probs(self, on: bool) -> None:
        chat = self.chat
        chat.probs = on
        for message in chat.messages():
            message.set_probs(on)
        if not on:
            self.details.clear()

    # -- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        with Horizontal(id="main"):
            with Vertical(id="chat-column"):
                yield ChatLog(id="chat")
                yield TokenDetails(id="token-details")
                yield PromptInput(
                    completer=cmds.complete,
                    placeholder="Message the model — Enter sends, Ctrl+J new line, /help",
                    id="prompt",
                )
            yield SamplingSidebar(self.params, id="sidebar", release_focus=True, max_pending=True)
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

    @property
    def details(self) -> TokenDetails:
        return self.query_one("#token-details", TokenDetails)

    def on_mount(self) -> None:
        self.reply.mount()
        self.prompt_input.keep_text = self._keeps_message
        self.prompt_input.focus()
        self.chat.markdown = self.markdown
        self.chat.probs = self.probs
        self.status_bar.status = "Loading model…"
        self._load_message = self.chat.add_message("notice", "Loading model…")
        if self.options.notice:
            self.add_notice(self.options.notice)
        for warning in self._start_warnings:
            self.add_notice(warning, error=True)
        if self.options.resume:
            self.history.resume_start()

    def on_unmount(self) -> None:
        """Leaving: stop a reply in progress so its thread ends within one token; release
        the transcript's lock (another instance may resume it)."""
        self.reply.stop()
        self.session.close()

    # -- loading (the app's load worker reports here) ------------------------------------

    def on_load_progress(self, message: LoadProgress) -> None:
        if message.second:
            self.compare.progress(message.text)
        elif self.lm is None and self.load_failed is None:
            self.status_bar.status = message.text
            if self._load_message is not None:
                self._load_message.set_text(message.text)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        if message.second:
            self.compare.loaded(message.lm, None)
            return
        lm = message.lm
        self.use_model(lm, self.options.model)
        summary = model_summary(lm)
        if self._load_message is not None:
            self._load_message.set_text(
                f"Loaded {summary}. Type a message; /help lists the commands."
            )
        for text in getattr(lm, "notices", ()):  # CUDA fallback, float16 on the CPU, ...
            self.add_notice(text)
            if self.options.mode == "batch":  # the batch view covers the chat: a toast too
                self.notify(text, severity="warning")
        if self.options.compare:  # B loads first, so a batch view starts with both
            self.compare.load(self.options.compare, then=self._start_batch)
        else:
            self._start_batch(True)

    def use_model(self, lm: Model, ref: ModelRef | None) -> None:
        """Chat with `lm` from now on (loaded, or switched by ``/model``; `ref`: what
        reopens it, None: its own source): session, header, status bar, sliders."""
        self.lm = lm
        label = getattr(lm, "source", None)
        label = str(label) if label else None
        if ref is None and label:
            ref = ModelRef.of(label)
        if ref is not None:
            ref = ModelRef(ref.source, ref.hf_checkpoint, label)
        self.session.switch_model(label, ref.to_json() if ref is not None else None)
        self.session.set_format(chat_format_of(lm))
        self.status_bar.status = "Ready"
        self.status_bar.model = model_summary(lm)
        self.app.sub_title = model_header(lm)  # every screen's header names the model
        self.sidebar.set_max_length(int(lm.max_length))
        self.update_context()

    def on_switch_progress(self, message: SwitchProgress) -> None:
        self.switch.progress(message.text)

    def on_switch_done(self, message: SwitchDone) -> None:
        self.switch.done(message)

    def _start_batch(self, _b_loaded: bool) -> None:
        if self.options.mode == "batch":
            self.open_batch(self.options.prompts_file, batch_size=self.options.batch_size)

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.second:
            self.compare.loaded(None, message.reason)
            return
        self.load_failed = message.reason
        self.status_bar.status = "Load failed — Ctrl+Q quits"
        self.status_bar.add_class("-error")
        if self._load_message is not None:
            self._load_message.remove()
            self._load_message = None
        self.add_notice(f"Could not load the model: {message.reason}", error=True)

    # -- context count -------------------------------------------------------------------

    def update_context(self) -> None:
        """Recount the context the conversation takes (tokenizing runs in a worker)."""
        if self.lm is not None:
            self._count_context(self.lm, self.session.snapshot(), int(self.params.max_new_tokens))

    @work(thread=True, exclusive=True, group="context", exit_on_error=False)
    def _count_context(self, lm: ChatModel, conversation: Conversation, max_new: int) -> None:
        """What the next message would carry (history fitted by the send-time rule)."""
        try:
            usage = context_usage(
                conversation,
                lambda t: len(lm.encode(t)),
                max_length=int(lm.max_length),
                max_new_tokens=max_new,
            )
        except BaseException:  # noqa: BLE001 - only a detail (a tokenizer panic too)
            return
        self.post_message(ContextCounted(usage.tokens, usage.turns_out))

    def on_context_counted(self, message: ContextCounted) -> None:
        if self.lm is None:
            return
        try:  # the count can arrive after the chat screen's widgets are gone (closing)
            bar = self.status_bar
        except NoMatches:
            return
        bar.set_context(message.tokens, int(self.lm.max_length), message.turns_out)

    # -- chat helpers --------------------------------------------------------------------

    def _report_error(self, text: str) -> None:
        self.add_notice(text, error=True)

    def add_notice(self, text: str, *, error: bool = False) -> ChatMessage:
        return self.chat.add_message("error" if error else "notice", text)

    def busy(self) -> bool:
        """True (with a notice) while a reply is generated."""
        if self.generating:
            self.add_notice(BUSY)
        return self.generating

    def remove_last_turn_widgets(self) -> None:
        if self.turn_widgets:
            for widget in self.turn_widgets.pop():
                widget.remove()

    # -- the conversation list (Ctrl+O, /conversations; `ConversationHistory`) -----------

    def action_conversations(self) -> None:
        if isinstance(self.app.screen, ConversationsScreen):
            return
        transcript = self.session.transcript
        current = transcript.path if transcript is not None and transcript.started else None
        listing = ConversationsScreen(Conversations(self.session.store), current)
        self.app.push_screen(listing, callback=self.open_conversation)

    def open_conversation(self, path: Path | None) -> None:
        self.history.open(path)

    def set_param(self, name: str, value: object) -> None:
        """Change a sampling parameter everywhere: params, running stream, slider."""
        setattr(self.params, name, value)
        stream = self.reply.stream if self.replying != "B" else None
        if stream is not None and stream.params is not self.params:
            setattr(stream.params, name, value)
        if name != "seed" and isinstance(value, int | float):
            self.sidebar.set_value(name, value)
        remember_param(self.settings, name, value)

    def reset_params(self) -> None:
        """``/defaults``: the built-in sampling defaults, and nothing remembered."""
        defaults = forget_params(self.settings)
        for name in REMEMBERED:
            value = getattr(defaults, name)
            if name == "max_new_tokens" and self.lm is not None:
                value = min(value, int(self.lm.max_length))
            self.set_param(name, value)
        forget_params(self.settings)
        shown = ", ".join(f"{name} {getattr(self.params, name):g}" for name in REMEMBERED)
        self.add_notice(f"Sampling settings back to their defaults: {shown}.")

    def restore_input(self, text: str) -> None:
        """``/undo``: the removed message goes back into the input, to edit and resend."""
        box = self.prompt_input
        box.load_text(text)
        box.move_cursor(box.document.end)
        box.focus()

    def switch_pending(self) -> bool:
        """True (with a notice) while ``/model`` loads: nothing is generated until then."""
        if self.switch.loading:
            self.add_notice("A model is loading (/model): send once it is loaded.")
        return self.switch.loading

    def switch_model(self, source: str | None) -> None:
        """``/model [PATH_OR_REPO]``: show the model, or switch to another one."""
        if source is None:
            self.switch.show()
        else:
            self.switch.start(source)

    def copy_to_clipboard(self, text: str) -> None:
        self.app.copy_to_clipboard(text)

    # -- input and the reply -------------------------------------------------------------

    @on(PromptInput.Submitted)
    def _on_submitted(self, event: PromptInput.Submitted) -> None:
        line = event.value
        if cmds.is_command(line):
            self.run_command(line)
        else:
            self.send(cmds.literal_text(line))

    def _keeps_message(self, text: str) -> bool:
        """Enter keeps a message in the input while a reply runs or the model loads."""
        if cmds.is_command(text):
            return False
        # no model (loading, or the load failed): the message waits in the input
        return self.generating or self.lm is None or self.switch.loading

    @on(PromptInput.Held)
    def _on_held(self, event: PromptInput.Held) -> None:
        if not self.generating and self.lm is None and self.load_failed:
            self.add_notice(HELD_FAILED.format(reason=self.load_failed), error=True)
            return
        self.add_notice(HELD if self.generating else HELD_LOADING)

    @on(PromptInput.ScrollChat)
    def _on_scroll_chat(self, event: PromptInput.ScrollChat) -> None:
        chat = self.chat
        {
            "page_up": chat.scroll_page_up,
            "page_down": chat.scroll_page_down,
            "home": chat.scroll_home,
            "end": chat.scroll_end,
        }[event.where]()

    @on(SamplingSidebar.Released)
    def _on_sidebar_released(self, event: SamplingSidebar.Released) -> None:
        """Esc, or a printable key, on a slider: back to the input (with that key)."""
        box = self.prompt_input
        box.focus()
        if event.text:
            box.insert(event.text)

    def run_command(self, line: str) -> None:
        self.slash.run(line)

    def send(self, text: str) -> None:
        text = text.strip()
        if not text or self.busy():
            return
        if self.switch_pending():
            return
        if self.lm is None:
            if self.load_failed:
                self.add_notice(f"No model: {self.load_failed}", error=True)
            else:
                self.add_notice("The model is still loading — try again in a moment.")
            return
        self.reply.start(self.inspector.model(self.lm), text)

    def on_scoring_progress(self, message: ScoringProgress) -> None:
        self.ppl.progress(message.text)

    def on_scoring_done(self, message: ScoringDone) -> None:
        self.ppl.finish(message.text, message.error)

    @property
    def last_timings(self) -> ReplyTimings | None:
        return self.reply.last_timings

    def on_turn_planned(self, message: TurnPlanned) -> None:
        self.reply.planned(message.plan)

    def on_reply_started(self, message: ReplyStarted) -> None:
        self.reply.started(message.stream)

    def on_generation_done(self, message: GenerationDone) -> None:
        """Whoever generated (one at a time): the pipeline ends, then its owner."""
        who = self.replying
        self.reply.ended()
        self.replying = ""
        if who in ("A", "branch"):
            self.reply.finished(message.stream)
        if who == "B":
            self.compare.answered(message)
        elif who == "branch":
            self.inspector.branch_done(message)
        else:
            self.reply.done(message)
            self.inspector.reply_done(message)

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return True if self.generating else None
        return True

    def action_stop(self) -> None:
        if not self.generating:
            return
        if self.replying != "B":  # B's answer leaves the status bar as it is
            self.status_bar.status = "Stopping…"
        self.reply.stop()

    def set_markdown(self, on: bool) -> None:
        """Render replies as Markdown or raw text (remembered)."""
        self.markdown = on
        self.settings.set("markdown", on)

    def action_toggle_probs(self) -> None:
        self.inspector.set_probs(None)

    def action_inspect(self) -> None:
        self.inspector.inspect_last()

    def action_help(self) -> None:
        if not isinstance(self.app.screen, HelpScreen):
            self.app.push_screen(HelpScreen([*self.BINDINGS[1:], self.BINDINGS[0]]))

    def action_clear(self) -> None:
        if self.busy():
            return
        self.session.clear()
        self.clear_view()
        self.update_context()
        self.add_notice("New conversation.")

    def clear_view(self) -> None:
        """Empty the chat log (a new conversation, or another one opened)."""
        self.turn_widgets.clear()
        self._load_message = None
        self.chat.remove_children()
        self.status_bar.set_speed(None)

    def action_retry(self) -> None:
        if self.busy() or self.switch_pending():
            return
        last = self.session.last_user()
        if last is None:
            self.add_notice("Nothing to retry.")
            return
        self.session.undo()
        self.remove_last_turn_widgets()
        self.send(last)

    @property
    def model_source(self) -> str | None:
        """What the CLI asked to open (for ``/info`` after a failed load); None: not said."""
        ref = self.options.model
        if ref is None:
            return None
        return ref.source + (f" --hf_checkpoint {ref.hf_checkpoint}" if ref.hf_checkpoint else "")

    def action_save(self) -> None:
        self.save(None)

    def save(self, path: str | None, *, overwrite: bool = False) -> None:
        if not self.conversation.turns:
            self.add_notice("Nothing to save yet.")
            return
        try:
            written = self.session.save(
                path, directory=self.data_dir / "exports", overwrite=overwrite
            )
        except SwamlaError as exc:
            self.add_notice(str(exc), error=True)
            return
        self.add_notice(f"Saved to {written}")

    def action_toggle_sidebar(self) -> None:
        self.sidebar.display = not self.sidebar.display

    def action_focus_sliders(self) -> None:
        """F2: focus the sliders; F2 again (or Esc) goes back to the input."""
        focused = self.focused
        if focused is not None and self.sidebar in focused.ancestors_with_self:
            self.prompt_input.focus()
            return
        self.sidebar.display = True
        self.sidebar.slider("temperature").focus()

    def quit_app(self) -> None:
        """Leave with status 1 when the model failed to load (a reply in progress stops)."""
        if self.generating:
            self.action_stop()
        code = 1 if self.load_failed else 0
        self.app.exit(code, return_code=code)

    @on(SamplingSidebar.Changed)
    def _on_sampling_changed(self, event: SamplingSidebar.Changed) -> None:
        stream = self.reply.stream if self.replying != "B" else None
        if stream is not None and stream.params is not self.params:
            setattr(stream.params, event.name, event.value)
        if self.sidebar.has_focus_within:  # a slider the user moved
            remember_param(self.settings, event.name, getattr(self.params, event.name))

    # -- the inspector's messages from the replies (they bubble up to here) --------------

    @on(ChatMessage.TokenFocused)
    def _on_token_focused(self, event: ChatMessage.TokenFocused) -> None:
        event.stop()
        self.inspector.token_focused(event.widget, event.index, event.hover)

    @on(ChatMessage.AlternativePicked)
    def _on_alternative_picked(self, event: ChatMessage.AlternativePicked) -> None:
        event.stop()
        self.inspector.alternative_picked(event.widget, event.index, event.token)

    @on(ChatMessage.InspectLeft)
    def _on_inspect_left(self, event: ChatMessage.InspectLeft) -> None:
        event.stop()
        self.inspector.inspect_left(event.widget)

    # -- batch ---------------------------------------------------------------------------

    def open_batch(self, path: str | None = None, *, batch_size: int | None = None) -> None:
        """Push the batch view; its result (key c) is a prompt for the chat input.

        `batch_size` None: ``--batch_size`` (None there too: the model's default)."""
        if self.lm is None:
            self.add_notice(self.load_failed or "The model is still loading.")
            return
        if path is not None:
            try:  # a bad file is an inline error: the chat stays
                load_batch_prompts(path)
            except SwamlaError as exc:
                self.add_notice(str(exc), error=True)
                return
        size = batch_size if batch_size is not None else self.options.batch_size
        names = (model_name(self.lm), self.compare.name)
        screen = BatchScreen(
            lm=self.lm,
            params=self.params.copy(),
            path=path,
            batch_size=size,
            compare=self.compare.lm,
            names=names,
        )
        self.last_batch = screen
        self.app.push_screen(screen, callback=self._batch_closed)

    def reopen_batch(self) -> None:
        """The last batch view again, its rows and results as they were left (Esc closed it)."""
        last = self.last_batch
        if last is None:
            self.add_notice("No batch results yet: /batch [FILE] runs a batch.")
            return
        if last in self.app.screen_stack:
            self.app.notify("The batch view is open already.", timeout=3)
            return
        screen = BatchScreen(lm=last.lm, compare=last.compare, names=last.names, restore=last)
        self.last_batch = screen
        self.app.push_screen(screen, callback=self._batch_closed)

    def _batch_closed(self, prompt: str | None) -> None:
        if not prompt:
            return
        box = self.prompt_input
        box.load_text(visible(prompt))  # a prompts file's line: the input shows it raw
        box.move_cursor(box.document.end)
        box.focus()


class _ChatTools:
    """The chat helpers a slash command starts (`ChatTools`): /ppl, /compare, /probs and
    the /undo of an inspector branch, looked up when used (they are built after the table)."""

    def __init__(self, screen: ChatScreen) -> None:
        self._screen = screen

    def start_perplexity(self, path: str) -> None:
        self._screen.ppl.start(path)

    def compare_last(self, path: str | None) -> None:
        self._screen.compare.compare_last(path)

    def set_probs(self, on: bool | None) -> None:
        self._screen.inspector.set_probs(on)

    def undo_branch(self) -> bool:
        return self._screen.inspector.undo_branch()

    def show_experts(self) -> None:
        summary = self._screen.inspector.experts_summary()
        if summary is not None:
            self._screen.app.push_screen(ExpertsScreen(summary))
