"""`SwamlaLM`: lm-evaluation-harness's model interface over a loaded checkpoint.

lm-eval scores a model through three calls (`loglikelihood`, `loglikelihood_rolling`,
`generate_until`). This class answers them with our own model and engine, and does what
lm-eval's `hf` model does wherever a choice changes a number, so a task scores the same
here as on the ``--export`` of the same checkpoint (`tests/unit/test_evaluate.py` holds
each item to 1e-4):

- text is encoded as the tokenizer does by default (special tokens as its post-processor
  adds them), and an empty context is replaced by the prefix token: BOS when the
  tokenizer has one, else EOS;
- a context + continuation longer than the context window keeps its last
  ``max_length + 1`` ids (the first of them only as context);
- rolling log-likelihood uses lm-eval's window plan (`runtime.perplexity`'s ``rolling``
  mode);
- generation is greedy (lm-eval's default; a task asking to sample gets its temperature),
  its context left-truncated to ``max_length - max_gen_toks`` ids, the text cut at the
  first stop string.

Log-likelihood requests run as batches of plain full forwards (longest first, so a batch
pads little), log-softmax in float32; generation runs batched on the KV-cached engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lm_eval.api.model import TemplateLM

from ..base.errors import SwamlaError
from ..base.params import SamplingParams
from ..runtime.perplexity import prefix_id, score_ids

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime.loaded_model import LoadedModel

Request = tuple[tuple[str, str], list[int], list[int]]


class EvalError(SwamlaError):
    """The model cannot answer an lm-eval request (no tokenizer, no EOS for a prefix)."""


class SwamlaLM(TemplateLM):  # type: ignore[misc]  # lm_eval is untyped
    """lm-eval's `LM` over a `LoadedModel` (or the chat-format wrapper around one)."""

    def __init__(self, lm: Any, *, batch_size: int | None = None, max_gen_toks: int = 256):
        super().__init__()
        inner: LoadedModel = getattr(lm, "lm", lm)  # FormattedModel wraps the model
        if inner.tokenizer is None:
            raise EvalError("lm-eval needs the tokenizer: pass --tokenizer PATH")
        self.model = inner
        self.tokenizer = inner.tokenizer
        self.batch_size = batch_size or (16 if inner.device.type == "cuda" else 4)
        self.max_gen_toks = max_gen_toks
        first = prefix_id(inner, "rolling")
        if first is None:
            raise EvalError("lm-eval needs a BOS or EOS token to start a text from")
        self._prefix = first

    # -- tokens -------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        eos = self.model.eos_id
        return self._prefix if eos is None else int(eos)

    @property
    def prefix_token_id(self) -> int:
        return self._prefix

    @property
    def max_length(self) -> int:
        return int(self.model.max_length)

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs: Any
    ) -> list[int]:
        if add_special_tokens is None and string.startswith(self.tok_decode([self._prefix])):
            add_special_tokens = False  # the text carries its own BOS (as lm-eval's hf does)
        kw = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        return [int(i) for i in self.tokenizer.encode(string, **kw)]

    def tok_decode(self, ids: Sequence[int]) -> str:
        return self.model.decode(list(ids))

    # -- scoring ------------------------------------------------------------------
    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        """(log-probability of the continuation, whether greedy decoding gives it)."""
        import torch

        L = self.max_length
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1] + requests[i][2]))
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        dev = self.model.device
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            fed, conts = [], []
            for i in rows:
                _, ctx, cont = requests[i]
                if not cont:
                    raise EvalError("lm-eval asked to score an empty continuation")
                whole = (ctx + cont)[-(L + 1) :]
                fed.append(whole[:-1])
                conts.append(cont[-len(whole) :])
            width = max(len(f) for f in fed)
            batch = torch.zeros(len(fed), width, dtype=torch.long)  # right padding
            for r, f in enumerate(fed):
                batch[r, : len(f)] = torch.tensor(f, dtype=torch.long)
            with torch.inference_mode():
                logits = self.model.model(batch.to(dev))
                for r, i in enumerate(rows):
                    n, c = len(fed[r]), conts[r]
                    logp = torch.log_softmax(logits[r, n - len(c) : n].float(), dim=-1)
                    target = torch.tensor(c, device=logp.device)
                    ll = float(logp.gather(1, target[:, None]).sum())
                    greedy = bool((logp.argmax(dim=-1) == target).all())
                    out[i] = (ll, greedy)
                    if self.cache_hook is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], out[i])
            del logits
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Each whole text's log-likelihood over lm-eval's disjoint rolling windows."""
        out: list[float] = []
        for req in requests:
            (text,) = req.args
            ids = [self._prefix, *self.tok_encode(text)]
            ll = 0.0
            if len(ids) > 1:
                nll, _ = score_ids(self.model, ids, windows="rolling", batch_size=self.batch_size)
                ll = -nll
            out.append(ll)
            if self.cache_hook is not None:
                self.cache_hook.add_partial("loglikelihood_rolling", (text,), ll)
        return out

    # -- generation -----------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy continuations (or sampled, when a task asks), cut at the stop strings."""
        eos = self.tok_decode([self.eot_token_id])
        groups: dict[tuple[tuple[str, ...], int, float], list[int]] = {}
        for i, req in enumerate(requests):
            _, kw = req.args
            groups.setdefault(_generation_key(kw, eos, self.max_gen_toks), []).append(i)
        out = [""] * len(requests)
        for (until, max_new, temperature), idx in groups.items():
            keep = self.max_length - max_new
            if keep <= 0:
                raise EvalError(
                    f"the task asks for {max_new} new tokens; the context holds {self.max_length}"
                )
            prompts = [self.tok_encode(requests[i].args[0])[-keep:] for i in idx]
            params = SamplingParams(
                temperature=temperature, top_k=0, top_p=1.0, repetition_penalty=1.0
            )
            news = self.model.generate_ids(
                prompts,
                max_new_tokens=max_new,
                temperature=params.temperature,
                top_k=params.top_k,
                top_p=params.top_p,
                repetition_penalty=params.repetition_penalty,
                seed=0,
                batch_size=self.batch_size,
            )
            for i, new in zip(idx, news, strict=True):
                text = self.tok_decode(new)
                for stop in until:
                    if stop:
                        text = text.split(stop)[0]
                out[i] = text
                if self.cache_hook is not None:
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out


def _generation_key(kw: Any, eos: str, default_max: int) -> tuple[tuple[str, ...], int, float]:
    """(stop strings with EOS's text, new tokens, temperature) of one request's gen_kwargs."""
    kw = dict(kw or {})
    until = kw.get("until") or []
    if isinstance(until, str):
        until = [until]
    stops = [str(s) for s in until]
    if eos not in stops:
        stops.append(eos)
    max_new = next(
        (int(kw[k]) for k in ("max_gen_toks", "max_new_tokens", "max_tokens") if k in kw),
        default_max,
    )
    temperature = float(kw.get("temperature", 0.0)) if kw.get("do_sample") else 0.0
    return tuple(stops), max_new, temperature
