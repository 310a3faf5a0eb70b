"""`Engine`: what generation needs from a loaded model, handed down to the engine.

The engine never sees the `LoadedModel` above it: streams and batch runs get this value
(model, context limit, end-of-text id, cache pool) and a `TextCodec`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from ..base.errors import SwamlaError
from ..base.params import SamplingParams
from ..model.transformer import SWAMLA
from .decode_loop import Generation
from .pool import CachePool
from .prompt_cache import PromptCache


@dataclass(frozen=True)
class Engine:
    model: SWAMLA
    max_length: int  # context limit (<= the model's block_size)
    eos_id: int | None
    pool: CachePool

    def prompt_cache(self) -> PromptCache:
        """A new turn-to-turn cache for one conversation on this model."""
        return PromptCache(
            self.model, self.max_length, graphs=self.pool.graphs, compile=self.pool.compile
        )

    @property
    def vocab_size(self) -> int:
        return int(self.model.cfg.vocab_size)

    def bad_ids(self, ids: Sequence[int]) -> str | None:
        """Why these prompt ids cannot be fed to the model (a one-line reason), else None.

        A tokenizer larger than the model's vocabulary produces ids the embedding does not
        have; feeding them would fail inside the forward pass.
        """
        v = self.vocab_size
        bad = next((i for i in ids if not 0 <= i < v), None)
        if bad is None:
            return None
        return (
            f"the prompt has token id {bad}, outside the model's vocabulary of {v} ids "
            "(the tokenizer is larger than the model's)"
        )

    def generation(
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        *,
        logprobs: int | None = None,
        prompt_cache: PromptCache | None = None,
        routing: bool = False,
    ) -> Generation:
        for ids in prompts:
            reason = self.bad_ids(ids)
            if reason:
                raise SwamlaError(reason)
        return Generation(
            self.model,
            prompts,
            params,
            max_length=self.max_length,
            eos_id=self.eos_id,
            cancel=cancel,
            use_graph=self.pool.graphs,
            cache_pool=self.pool,
            logprobs=logprobs,
            prompt_cache=prompt_cache,
            routing=routing,
        )
