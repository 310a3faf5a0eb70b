"""The token-probability inspector in the chat: ``/probs``, inspect mode, branches.

* ``/probs [on|off]`` / F3 (remembered in the settings file as ``probs``): while on, each
  reply is streamed with ``logprobs=TOP_N`` (`RecordingModel`), and when it is done its
  ids and records become a `ReplyTree` on the reply's `ChatMessage`, which then shows its
  tokens coloured by probability. Off: nothing is recorded (no cost).
* F4, or a click on a token: inspect mode on the reply (`ChatMessage.inspect`); the
  `TokenDetails` panel follows the cursor or the pointer.
* Picking an alternative forks the last reply's tree and regenerates from there: the
  same prompt text, then the branch's ids (`prefix_ids`, no re-tokenizing), with the same
  settings and what is left of ``max_new_tokens``; the chat history's last reply becomes
  the branch (the session records an undo and the new turn). ``/undo`` steps back to the
  parent branch, restoring its text exactly; only then does ``/undo`` drop exchanges.

``/experts``: for an MoE or Engram model the same recording carries each token's routing
(`TokenLogprobs.routing`); the command summarises the shown branch of the last reply in an
`ExpertsScreen` (the chat screen opens it), and the details panel lists the focused token's experts.

A branch generates through the chat's one reply pipeline (`ReplyController.launch`,
``replying == "branch"``), so Esc stops it and a message waits, as for any reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, cast

from ...base.errors import SwamlaError
from ...base.experts import ExpertSummary, summarise, tally_routes
from ...base.stops import cut_at_stop
from ...chat.token_tree import (
    TOP_N,
    Branch,
    ReplyTree,
    alternatives,
    clip_pieces,
    reply_text,
    token_pieces,
)
from ...protocols import ChatModel, ReplyStream
from ..messages import GenerationDone
from ..widgets.chat_message import ChatMessage
from ..widgets.token_details import TokenDetails, TokenView, details_text, token_label
from .recording import InspectableModel, InspectableStream, RecordingModel
from .reply import CACHE_KEY, FINISH_NOTES

if TYPE_CHECKING:  # pragma: no cover
    from ..options import AppOptions
    from ..screens.chat import ChatScreen

__all__ = ["InspectorController", "start_probs"]

OFF = "Token probabilities are off: /probs on (or F3), then send a message."
STILL_GENERATING = "The reply is still being written: /experts once it has finished."
NO_RECORDS = (
    "The last reply has no token probabilities (it was generated with /probs off):"
    " /retry generates it again."
)


class _Remembered(Protocol):
    def get(self, key: str, default: object) -> object: ...


def start_probs(options: AppOptions, settings: _Remembered) -> bool:
    """``--debug`` turns token probabilities on for this run (not remembered); otherwise
    the remembered ``/probs``."""
    start = options.probs
    return bool(settings.get("probs", False)) if start is None else start


class InspectorController:
    """``/probs``, inspect mode and branches for `screen`'s chat."""

    def __init__(self, screen: ChatScreen) -> None:
        self.screen = screen
        self._opened: dict[int, tuple[str, tuple[str, ...]]] = {}
        self._branch: tuple[ChatMessage, ReplyTree] | None = None
        """The reply being branched and its tree, while the branch generates."""

    @property
    def probs(self) -> bool:
        return self.screen.probs

    @property
    def details(self) -> TokenDetails:
        return self.screen.details

    def model(self, lm: ChatModel) -> ChatModel:
        """What a reply streams from: `lm`, recording while probabilities are on."""
        return cast(ChatModel, RecordingModel(lm, self._opened)) if self.probs else lm

    # -- /probs, F3, F4 -----------------------------------------------------------------

    def set_probs(self, on: bool | None) -> None:
        """``/probs [on|off]`` (None toggles); remembered."""
        screen = self.screen
        screen.probs = on = (not screen.probs) if on is None else on
        screen.settings.set("probs", on)
        screen.add_notice(
            "Token probabilities on: new replies are coloured by the probability of each token"
            " (underlined: below 10%); F4 inspects the last reply."
            if on
            else "Token probabilities off."
        )

    def last_reply(self) -> ChatMessage | None:
        turns = self.screen.turn_widgets
        return turns[-1][1] if turns else None

    def inspect_last(self) -> None:
        """F4: inspect mode on the last reply."""
        screen = self.screen
        if not self.probs:
            screen.add_notice(OFF, error=True)
            return
        reply = self.last_reply()
        if reply is None:
            screen.add_notice("No reply to inspect yet.", error=True)
            return
        if not reply.inspect():
            screen.add_notice(NO_RECORDS, error=True)

    def experts_summary(self) -> ExpertSummary | None:
        """``/experts``: the MoE summary of the last reply (as shown: its current branch);
        None after an error notice (the screen shows the summary in an `ExpertsScreen`)."""
        screen = self.screen
        if not self.probs:
            screen.add_notice(
                "/experts reads the routing recorded with token probabilities:"
                " /probs on (or F3), then send a message.",
                error=True,
            )
            return None
        reply = self.last_reply()
        tree = reply.reply_tree if reply is not None else None
        if tree is None and screen.generating:  # its records arrive when it finishes
            screen.add_notice(STILL_GENERATING, error=True)
            return None
        if tree is None:
            screen.add_notice(NO_RECORDS if reply is not None else "No reply yet.", error=True)
            return None
        routes = [step.routing for step in tree.current.steps]
        if all(r is None for r in routes):
            screen.add_notice("This model has no MoE or Engram layers to show.", error=True)
            return None
        return summarise("last reply", *tally_routes(routes))

    # -- a reply finished -----------------------------------------------------------------

    def reply_done(self, message: GenerationDone) -> None:
        """After `ReplyController.done`: give the new reply its tree."""
        stream = message.stream
        if stream is None:
            return
        opened = self._opened.pop(id(stream), None)
        reply = self.last_reply()
        if opened is None or message.error is not None or reply is None:
            return
        s = cast(InspectableStream, stream)
        ids, records = list(s.token_ids), list(s.token_logprobs)
        if len(ids) != len(records):
            return
        turn = self.screen.conversation.turns[-1]
        raw = self.screen.reply.raw
        tree = ReplyTree(opened[0], opened[1], ids, records, raw, stopped=turn.stopped)
        tree.root.note = reply.status
        self._show(reply, tree)

    def _lm(self) -> InspectableModel | None:
        lm = self.screen.lm
        return cast(InspectableModel, lm) if lm is not None and hasattr(lm, "decode") else None

    @staticmethod
    def _label(lm: InspectableModel, token: int) -> str:
        """The token's text, or its bytes from the tokenizer's token string when it
        is part of a character."""
        text = lm.decode([token])
        piece = None
        convert = getattr(getattr(lm, "tokenizer", None), "convert_ids_to_tokens", None)
        if "\ufffd" in text and callable(convert):
            try:
                got = convert(token)
            except (IndexError, KeyError, TypeError, ValueError, OverflowError):
                got = None
            piece = got if isinstance(got, str) else None
        return token_label(text, token, piece)

    def _pieces(self, branch: Branch, stop: Sequence[str]) -> list[str]:
        """What each token of `branch` shows: its decoded piece, clipped to the reply the
        chat keeps (before a stop string, blanks around it stripped)."""
        lm = self._lm()
        if lm is None:
            return []
        try:
            pieces = token_pieces(lm.decode, branch.tokens, getattr(lm, "eos_id", None))
        except SwamlaError:
            return []
        if not "".join(pieces).startswith(branch.raw):
            return []  # not the text the chat shows: leave it plain
        cut = cut_at_stop(branch.raw, stop)[0]
        start = len(cut) - len(cut.lstrip())
        return clip_pieces(pieces, start, start + len(cut.strip()))

    def _show(self, reply: ChatMessage, tree: ReplyTree) -> None:
        reply.set_tree(tree, self._pieces(tree.current, self.screen.conversation.chat_format.stop))

    # -- details panel --------------------------------------------------------------------

    def token_focused(self, widget: ChatMessage, index: int | None, hover: bool) -> None:
        """Inspect mode: the panel follows the cursor; hover: the message's tooltip."""
        tree, lm = widget.reply_tree, self._lm()
        if index is None or tree is None or lm is None or not 0 <= index < len(widget.pieces):
            if hover:
                widget.tooltip = None
            elif not any(m.inspecting for m in self.screen.chat.messages()):
                self.details.clear()
            return
        step = tree.current.steps[index]
        try:
            alts = [(a, self._label(lm, a.token)) for a in alternatives(step)]
            text = self._label(lm, step.token)
        except SwamlaError as exc:
            self.screen.add_notice(str(exc), error=True)
            return
        total = len(tree.current.steps)
        view = TokenView(index, total, text, step, alts, widget.selected, widget.inspecting)
        if hover:
            widget.tooltip = details_text(view)
        else:
            widget.tooltip = None
            self.details.show(view)

    def inspect_left(self, widget: ChatMessage) -> None:
        self.details.clear()
        self.screen.prompt_input.focus()

    # -- branches -------------------------------------------------------------------------

    def alternative_picked(self, widget: ChatMessage, index: int, token: int) -> None:
        screen = self.screen
        tree, lm = widget.reply_tree, self._lm()
        if screen.busy() or tree is None or lm is None:
            return
        if widget is not self.last_reply():
            screen.add_notice("Only the last reply can be branched.", error=True)
            return
        try:
            branch = tree.fork(index, token)
        except SwamlaError as exc:
            screen.add_notice(str(exc), error=True)
            return
        self._regenerate(widget, tree, branch, lm)

    def _regenerate(
        self, widget: ChatMessage, tree: ReplyTree, branch: Branch, lm: InspectableModel
    ) -> None:
        screen = self.screen
        try:
            prefix = "".join(token_pieces(lm.decode, branch.tokens, getattr(lm, "eos_id", None)))
        except SwamlaError as exc:  # the tokenizer failed: the reply stays as it was
            tree.abandon()
            screen.add_notice(str(exc), error=True)
            return
        widget.leave()
        self.details.clear()
        fmt = screen.conversation.chat_format
        widget.set_tree(None, [])
        widget.set_text(fmt.cut_reply(prefix))
        widget.set_streaming(True)
        screen.prompt_input.focus()
        got: list[str] = []

        def show(pieces: list[str]) -> None:
            got.extend(pieces)
            if pieces:
                widget.set_text(fmt.cut_reply(prefix + "".join(got)))

        left = int(screen.params.max_new_tokens) - len(branch.tokens)
        params = screen.params.copy(max_new_tokens=max(1, left)) if left > 0 else None
        prefix_ids = list(tree.current.tokens)

        def open_stream() -> ReplyStream | None:
            """Worker thread: the branch's continuation (None: it already has
            max_new_tokens tokens)."""
            if params is None:
                return None
            return lm.stream(
                tree.prompt, params, stop=tree.stop, logprobs=TOP_N, prefix_ids=prefix_ids,
                cache_key=CACHE_KEY,
            )  # fmt: skip

        self._branch = (widget, tree)
        screen.reply.launch("branch", show, open_stream)

    def branch_done(self, message: GenerationDone) -> None:
        """The branch's generation ended (after `ReplyController.ended`)."""
        if self._branch is None:
            return
        (widget, tree), self._branch = self._branch, None
        screen = self.screen
        stream = cast(InspectableStream | None, message.stream)
        error = message.error
        stopped = screen.reply.cancel.is_set() or (
            stream is not None and stream.finish_reason == "cancelled"
        )
        widget.set_streaming(False)
        lm = self._lm()
        ids = list(stream.token_ids) if stream is not None else []
        records = list(stream.token_logprobs) if stream is not None else []
        pieces: list[str] = []
        if error is None and lm is not None:
            try:  # the whole branch decoded from its ids (the fork may split a character)
                pieces = token_pieces(
                    lm.decode, tree.current.tokens + ids, getattr(lm, "eos_id", None)
                )
            except SwamlaError as exc:
                error = str(exc)
        if error is not None:
            tree.abandon()
            self._restore(widget, tree)
            screen.status_bar.status = "Generation failed"
            screen.add_notice(f"Generation failed: {error} — the reply is as before", error=True)
        else:
            reason = stream.finish_reason if stream is not None else "length"
            raw, hit = reply_text(pieces, tree.stop)
            note = "stopped" if stopped else ("" if hit else FINISH_NOTES.get(reason or "", ""))
            tree.complete(ids, records, raw, stopped=stopped, note=note)
            self._restore(widget, tree)
            screen.status_bar.status = "Stopped" if stopped else "Ready"
            screen.add_notice(
                f"Branched at token {tree.current.fork + 1}: /undo returns to the previous reply."
            )
        screen.update_context()

    def _restore(self, widget: ChatMessage, tree: ReplyTree) -> None:
        """Make `tree.current` the chat's last reply: the widget and the history."""
        screen, b = self.screen, tree.current
        turns = screen.conversation.turns
        if not turns:
            return
        user = turns[-1].user
        screen.session.undo()
        turn = screen.session.finish_turn(user, b.raw, stopped=b.stopped)
        widget.set_text(turn.assistant)
        widget.mark(b.note, stopped=b.stopped)
        self._show(widget, tree)

    def undo_branch(self) -> bool:
        """``/undo`` on a branched reply: back to the parent branch (False: not branched)."""
        reply = self.last_reply()
        tree = reply.reply_tree if reply is not None else None
        if reply is None or tree is None or tree.undo() is None:
            return False
        self._restore(reply, tree)
        self.details.clear()
        self.screen.update_context()
        self.screen.add_notice("Back to the previous version of the reply.")
        return True
