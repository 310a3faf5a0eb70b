"""`LoadedModel`: a loaded checkpoint with its tokenizer, and the generation entry points.

It describes the model (`card`, `summary`) and turns text into engine calls; the engine
below it gets only an `Engine` value (model, limits, eos id, cache pool) and a `TextCodec`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..base.errors import SwamlaError
from ..base.params import BatchOptions, SamplingParams, StreamOptions
from ..base.scoring import PerplexityResult, ScoreOptions
from ..engine.batch_run import BatchResult, run_batch
from ..engine.core import Engine
from ..engine.options import EngineOptions
from ..engine.pool import CachePool
from ..engine.prompt_cache import PromptCache
from ..engine.stream import TokenStream
from ..engine.text import TextCodec
from ..model.config import ModelConfig
from ..model.formats import model_card_lines
from ..model.transformer import SWAMLA

if TYPE_CHECKING:
    from typing_extensions import Unpack


class LoadedModel:
    """A loaded checkpoint: model, tokenizer and the generation entry points."""

    max_prompt_caches = 2

    def __init__(
        self,
        model: SWAMLA,
        config: ModelConfig,
        tokenizer: Any,
        *,
        source: str,
        meta: dict[str, Any],
        max_length: int,
        stored_dtype: str,
        notices: list[str],
        engine_options: EngineOptions | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.tokenizer = tokenizer
        self.source = source
        self.meta = meta
        self.max_length = max_length
        self.stored_dtype = stored_dtype
        self.notices = notices
        head = model.lm_head.weight  # tied to the embedding
        self.device = head.device
        self.dtype = head.dtype
        self.eos_id: int | None = getattr(tokenizer, "eos_token_id", None) if tokenizer else None
        self.engine_options = engine_options or EngineOptions()
        graphs = self.device.type == "cuda" and self.engine_options.cuda_graphs
        # the graph loop does not save/restore recurrent state around its warm-up runs
        graphs = graphs and not model.has_recurrent_state
        pool = CachePool(model, max_length, graphs=graphs, compile=self.engine_options.compile)
        self.engine = Engine(model, max_length, self.eos_id, pool)
        self.codec = TextCodec(tokenizer) if tokenizer is not None else None
        self.load_seconds: float | None = None  # set by `load`
        self._prompt_caches: OrderedDict[str, PromptCache] = OrderedDict()

    # -- description ------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return int(self.model.num_params())

    def summary(self) -> str:
        c = self.config
        dt = str(self.dtype).removeprefix("torch.")
        head = f"{self.n_params:,} params"
        active = self.model.active_params()
        if active != self.n_params:
            head += f" ({active:,} active)"
        parts = [head, c.kinds_text(), dt, str(self.device)]
        if c.generation not in ("G1", "G2"):  # v1 models keep the v1 line
            parts.append(c.generation)
        if c.moe is not None:
            kind = "latent MoE" if c.moe.latent else "MoE"
            parts.append(f"{kind} top-{c.moe.top_k} of {c.moe.n_experts}")
        if c.engram is not None:
            parts.append(f"Engram x{len(c.engram.layers)}")
        return " · ".join(parts)

    def card(self) -> dict[str, str]:
        c = self.config
        short = {"swa": "SWA", "mla": "MLA", "deltanet": "DN"}
        card: dict[str, str] = {
            "source": self.source,
            "format": str(self.meta.get("format", "")),
            "generation": str(self.meta.get("generation", c.generation)),
            "parameters": f"{self.n_params:,}",
            "active parameters": f"{self.model.active_params():,} per token",
            "layers": f"{c.n_layer} ({c.kinds_text()}): "
            + ",".join(short[k] for k in c.layer_kinds),
            "n_embd / heads": f"{c.n_embd} / {c.n_head}"
            + (f" (SWA kv heads {c.n_kv_head}, head dim {c.head_dim})" if c.n_swa else ""),
            "vocab / block_size": f"{c.vocab_size} / {c.block_size}",
        }
        card.update(model_card_lines(c, self.model.swa_window))
        card["stored dtype"] = self.stored_dtype
        card["running"] = f"{str(self.dtype).removeprefix('torch.')} on {self.device}"
        card["max_length"] = str(self.max_length)
        for k in ("step", "total_tokens", "val_loss"):
            if k in self.meta:
                v = self.meta[k]
                card[k] = f"{v:.4f}" if isinstance(v, float) else f"{v:,}"
        card.update(_g7_card(self.meta))
        card["tokenizer"] = (
            getattr(self.tokenizer, "name_or_path", "?") if self.tokenizer else "not found"
        )
        return card

    # -- text ---------------------------------------------------------------------
    def _need_codec(self) -> TextCodec:
        if self.codec is None:
            raise SwamlaError("no tokenizer loaded: pass --tokenizer PATH")
        return self.codec

    def encode(self, text: str) -> list[int]:
        return self._need_codec().encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._need_codec().decode(ids)

    # -- the reference path ---------------------------------------------------------
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Plain full causal forward from position 0: LongTensor [B, T] -> logits [B, T, V]."""
        with torch.inference_mode():
            out: torch.Tensor = self.model(ids.to(self.device))
            return out.float()

    # -- generation -------------------------------------------------------------------
    @staticmethod
    def _params(params: SamplingParams | None, overrides: Mapping[str, object]) -> SamplingParams:
        """The live `params` when nothing is overridden; otherwise a copy with the overrides
        (the caller's object is never changed)."""
        p = params if params is not None else SamplingParams()
        for k in overrides:
            if not hasattr(p, k):
                raise TypeError(f"unknown sampling parameter '{k}'")
        return p.copy(**overrides) if overrides else p

    def default_batch_size(self) -> int:
        return 64 if self.device.type == "cuda" else 16

    def generate_ids(
        self,
        prompts: list[list[int]],
        max_new_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 50,
        top_p: float = 0.9,
        repetition_penalty: float = 1.1,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> list[list[int]]:
        """New ids only, one list per prompt; prompts run batched internally."""
        params = SamplingParams(temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed)
        bs = batch_size or self.default_batch_size()
        out: list[list[int]] = []
        for i in range(0, len(prompts), bs):
            gen = self.engine.generation(prompts[i : i + bs], params)
            for _ in gen:
                pass
            out.extend(r.new for r in gen.rows)
        return out

    def stream(
        self,
        text: str,
        params: SamplingParams | None = None,
        **options: Unpack[StreamOptions],
    ) -> TokenStream:
        """`logprobs=k`: record each token's probabilities and top-k alternatives
        (`TokenStream.token_logprobs`; decodes without CUDA graphs). `prefix_ids`: ids
        appended after the encoded `text` (a reply continued from given tokens, e.g. an
        inspector branch: ids, so no token boundary moves by re-tokenizing). `cache_key`:
        the conversation's turn-to-turn cache (`prompt_cache`)."""
        stop = options.pop("stop", ())
        logprobs = options.pop("logprobs", None)
        prefix_ids = options.pop("prefix_ids", ())
        key = options.pop("cache_key", None)
        p = self._params(params, options)
        codec = self._need_codec()
        ids = codec.encode(text) + [int(i) for i in prefix_ids]
        pc = self.prompt_cache(key) if key is not None else None
        return TokenStream(
            self.engine, codec, ids, p, stop, logprobs=logprobs, prompt_cache=pc,
            load_s=self.load_seconds,
        )  # fmt: skip

    def prompt_cache(self, key: str) -> PromptCache:
        """The decode state kept for conversation `key` (each holds a context-sized cache,
        so only the `max_prompt_caches` most recently used are kept)."""
        caches = self._prompt_caches
        pc = caches.pop(key, None) or self.engine.prompt_cache()
        caches[key] = pc
        while len(caches) > self.max_prompt_caches:
            caches.popitem(last=False)
        return pc

    def forget_prompt_caches(self) -> None:
        self._prompt_caches.clear()

    def generate(self, text: str, *, stop: Sequence[str] = (), **kw: Any) -> str:
        s = self.stream(text, SamplingParams(), stop=stop, **kw)
        return "".join(s)

    def generate_batch(
        self,
        texts: Sequence[str],
        params: SamplingParams | None = None,
        **options: Unpack[BatchOptions],
    ) -> Iterator[BatchResult]:
        """Run prompts in batches; yield each result as its row finishes (see engine.batch)."""
        return run_batch(
            self.engine,
            self._need_codec(),
            texts,
            params or SamplingParams(),
            batch_size=options.get("batch_size") or self.default_batch_size(),
            stop=options.get("stop", ()),
            cancel=options.get("cancel"),
            continuous=self.engine_options.continuous_batching,
        )

    @property
    def continuous_batching(self) -> bool:
        """`generate_batch` refills finished rows (`swamla_tui.batch.job.run_chunks` then hands
        it every prompt at once); False with static batching or SWA window caches."""
        return self.engine_options.continuous_batching and not self.engine.model.swa_window

    def perplexity(self, text: str, **options: Unpack[ScoreOptions]) -> PerplexityResult:
        """`swamla_tui.runtime.perplexity.perplexity` on this model (what `/ppl` calls, torch-free)."""
        from .perplexity import perplexity

        return perplexity(self, text, **options)


def _g7_card(meta: Mapping[str, Any]) -> dict[str, str]:
    """The 2026 container's facts (formats G7 §1.1, §8) and the ignored-weights warning."""
    out: dict[str, str] = {}
    if meta.get("checkpoint_type"):
        out["checkpoint type"] = str(meta["checkpoint_type"])
    if "pretrain_tokens" in meta or "instruct_tokens" in meta:
        pre, ins = meta.get("pretrain_tokens"), meta.get("instruct_tokens")
        text = " / ".join(f"{v:,}" if isinstance(v, int | float) else "?" for v in (pre, ins))
        if not pre and not ins and meta.get("total_tokens"):  # Hub base uploads store 0 / 0
            text += " (as stored; see total_tokens)"
        out["pretrain / instruct tokens"] = text
    if meta.get("weights"):
        decay = meta.get("ema_decay")
        out["weights"] = str(meta["weights"]) + (f"; EMA decay {decay:g}" if decay else "")
    if meta.get("ignored_weights"):
        out["ignored weights"] = (
            f"WARNING: running without {meta['ignored_weights']} (--ignore-unknown-weights)"
        )
    return out


__all__ = ["LoadedModel", "BatchResult"]
