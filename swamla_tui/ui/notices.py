"""Toasts as literal text: one `notify` for the app and the screens that quote user data.

Notices quote paths, prompts-file lines and model output: they are never markup
(``/batch /tmp/x[/]y.txt`` must not raise a MarkupError) and their control characters
are made visible (issue 11: no raw escapes reach the terminal). `LiteralNotify` goes
first in the bases of an App or a Screen (a Screen's own `notify` passes markup=True).
"""

from __future__ import annotations

from textual.notifications import SeverityLevel

from ..base.safe_text import visible

__all__ = ["LiteralNotify"]


class LiteralNotify:
    """Mixin: `notify` shows `message` literally, controls made visible."""

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """`markup` is accepted for the signature and ignored: a toast is never markup."""
        super().notify(  # type: ignore[misc]
            visible(message), title=title, severity=severity, timeout=timeout, markup=False
        )
