"""transformers config for an exported SWA-MLA checkpoint (shipped in the export folder).

Every dimension of the model lives in `swamla_model` (the project's `ModelConfig` as a
dict), so a new field or layer kind needs no change here; the usual transformers names
(`vocab_size`, `hidden_size`, ...) are derived from it for tools that read them.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig


class SwamlaConfig(PretrainedConfig):
    model_type = "swamla"

    def __init__(
        self,
        swamla_model: dict[str, Any] | None = None,
        swa_attention: str = "full",
        provenance: dict[str, Any] | None = None,
        tied_weights: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.swamla_model = dict(swamla_model or {})
        self.swa_attention = swa_attention  # "full" (as trained) or "window"
        self.provenance = dict(provenance or {})
        self.tied_weights = dict(tied_weights or {"lm_head.weight": "transformer.wte.weight"})
        m = self.swamla_model
        if m:
            kwargs.setdefault("vocab_size", m.get("vocab_size"))
            kwargs.setdefault("hidden_size", m.get("n_embd"))
            kwargs.setdefault("num_hidden_layers", m.get("n_layer"))
            kwargs.setdefault("num_attention_heads", m.get("n_head"))
            kwargs.setdefault("max_position_embeddings", m.get("block_size"))
        kwargs.setdefault("tie_word_embeddings", True)
        kwargs.setdefault("use_cache", False)  # full recompute per token: no KV cache here
        super().__init__(**kwargs)
