"""The header's one line about the loaded model, from its card (no textual import).

What a user wants to see at a glance: which checkpoint (file, or ``repo@folder`` for a
Hub or checkpoint-folder source), how far it was trained (step, tokens, val_loss when the
checkpoint knows them), the tokenizer and, when it is not the plain one, the conversation
format; and a warning when the model runs without tensors it did not know
(``--ignore-unknown-weights``). The full card stays in ``/info`` and ``--info``.
"""

from __future__ import annotations

from pathlib import Path

from ..base.safe_text import visible
from ..protocols import ChatModel

__all__ = ["checkpoint_name", "header_line", "model_header", "model_summary", "short_count"]


def short_count(text: str) -> str:
    """``"2,000,000"`` -> ``"2M"``; anything that is not a plain count is returned as is."""
    try:
        n = float(text.replace(",", ""))
    except ValueError:
        return text
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:g}"


def checkpoint_name(source: str) -> str:
    """A short name: the file name, or ``repo@folder`` for a checkpoint inside a folder."""
    parts = [p for p in source.replace("\\", "/").split("/") if p]
    if not parts:
        return source
    path = Path(source).expanduser()
    if path.is_file() or parts[-1].endswith((".pt", ".pth", ".ckpt")):
        return parts[-1]
    if path.exists():  # a local checkpoint folder
        return f"{parts[-2]}@{parts[-1]}" if len(parts) >= 2 else parts[-1]
    if len(parts) >= 3:  # the Hub: user/repo/folder
        return f"{'/'.join(parts[:-1])}@{parts[-1]}"
    return "/".join(parts)


def header_line(card: dict[str, str], summary: str = "") -> str:
    """``"tiny_train.pt · step 120 · 2.1M tokens · val_loss 2.31 · tok tok384 · ChatML"``."""
    bits = [checkpoint_name(card.get("source", "model"))]
    if card.get("step"):
        bits.append(f"step {short_count(card['step'])}")
    if card.get("total_tokens"):
        bits.append(f"{short_count(card['total_tokens'])} tokens")
    if card.get("val_loss"):
        bits.append(f"val_loss {card['val_loss']}")
    tokenizer = card.get("tokenizer", "")
    if tokenizer:
        bits.append(f"tok {Path(tokenizer).name or tokenizer}")
    chat_format = card.get("chat format", "")
    if chat_format.startswith("ChatML"):
        bits.append("ChatML")
    if card.get("ignored weights"):  # loaded with --ignore-unknown-weights: never hidden
        bits.append("⚠ unknown weights ignored")
    if summary:
        bits.append(summary)
    return " · ".join(bits)


def model_summary(lm: ChatModel) -> str:
    """The model's one-line summary (size, layers, dtype, device) for the status bar."""
    try:  # checkpoint-provided text: no raw control characters reach the terminal
        return visible(str(lm.summary()))
    except Exception:  # noqa: BLE001 - the summary is only a label
        return visible(str(getattr(lm, "source", "model")))


def model_header(lm: ChatModel) -> str:
    """`header_line` of the model's card (its summary when the card fails)."""
    try:
        return visible(header_line(dict(lm.card())))
    except Exception:  # noqa: BLE001 - the header is only a label
        return model_summary(lm)
