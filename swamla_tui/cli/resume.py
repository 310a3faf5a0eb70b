"""``--resume [ID]``: which conversation, and which model it goes on with.

Resolved before the screen opens, so a wrong id is one line on stderr (exit 1) and the
model the conversation was made with can be loaded in its place: without ``--checkpoint``
/ ``--hf_model`` / ``--demo``, the model its transcript records is reopened (a local one
that is gone: the demo, with a notice); with one that differs, one notice says which
model the conversation goes on with. Transcripts written before the model was recorded
give only the loaded checkpoint's label, which is reopened only when it is a file or
folder that exists.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from ..base.paths import data_dir
from ..chat.conversations import Conversations, ModelRef, model_of
from ..chat.transcript import TranscriptStore

__all__ = ["ResumeTarget", "resolve_resume"]


@dataclass(frozen=True)
class ResumeTarget:
    path: Path | None
    """The transcript to reopen; None: there is none yet (the app says so)."""
    notice: str | None
    """One line for the chat when the conversation goes on with another model."""


def _is_local(text: str) -> bool:
    return text.startswith((".", "/", "~", os.sep)) or Path(text).expanduser().exists()


def resolve_resume(args: argparse.Namespace, demo: str) -> ResumeTarget:
    """The conversation ``--resume`` names; sets ``args.checkpoint`` / ``args.hf_model``
    (and ``--hf_checkpoint``) to its model when none was given. `demo`: the demo's folder.
    Raises `SwamlaError` when an id names no conversation, or several."""
    store = TranscriptStore(data_dir() / "transcripts")
    if args.resume is True:
        path = store.latest()
        if path is None:
            return ResumeTarget(None, None)
    else:
        path = Conversations(store).find(str(args.resume))
    try:
        replay = TranscriptStore.replay(path)
    except Exception:  # noqa: BLE001 - the app reports the transcript it cannot read
        return ResumeTarget(path, None)
    ref = model_of(replay)
    if ref is None:
        return ResumeTarget(path, None)
    given = args.checkpoint or args.hf_model or (demo if args.demo else None)
    if given:
        current = ModelRef.of(given, args.hf_checkpoint if not args.demo else None)
        if ref.same_model(current):
            return ResumeTarget(path, None)
        return ResumeTarget(
            path,
            f"This conversation was made with {ref.describe()}; it goes on with "
            f"{current.describe()}.",
        )
    recorded = replay.model is not None
    local = _is_local(ref.source)
    if local and not Path(ref.source).expanduser().exists() or not (recorded or local):
        return ResumeTarget(
            path,
            f"This conversation was made with {ref.describe()}, which is not found: it goes "
            "on with the demo model.",
        )
    if ref.same_model(ModelRef.of(demo)):
        args.demo = True
    elif local:
        args.checkpoint = ref.source
    else:
        args.hf_model = ref.source
    if ref.hf_checkpoint and not args.demo:
        args.hf_checkpoint = ref.hf_checkpoint
    return ResumeTarget(path, None)
