"""Loading the model off the UI thread, in a thread that never holds up quitting.

`load_model` runs inside the app's load worker: the loader itself runs in a *daemon*
thread (torch imports and checkpoint reads cannot be interrupted, and quitting must not
wait for them), which the worker polls until it ends or the worker is cancelled.
Progress, the model or the one-line failure reach the app as messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from textual.message import Message
from textual.worker import Worker

from ..base.errors import one_line
from ..protocols import Loader, Model
from .messages import LoadFailed, LoadProgress, ModelLoaded

__all__ = ["load_model"]


def load_model(loader: Loader, post: Callable[[Message], object], worker: Worker[None]) -> None:
    """Run `loader`, posting `LoadProgress`, then `ModelLoaded` or `LoadFailed`."""
    model: list[Model] = []
    error: list[BaseException] = []

    def progress(text: str) -> None:
        if not worker.is_cancelled:
            post(LoadProgress(str(text)))

    def target() -> None:
        try:
            model.append(loader(progress))
        except BaseException as exc:  # noqa: BLE001 - shown to the user, app stays up
            error.append(exc)

    thread = threading.Thread(target=target, name="swamla-load", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.05)
        if worker.is_cancelled:
            return
    if error:
        post(LoadFailed(one_line(error[0])))
    elif model:
        post(ModelLoaded(model[0]))
