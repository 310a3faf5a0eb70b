"""`swamla_tui.load()`: the public Python API, used by the CLI and the UI alike."""

from __future__ import annotations

import os
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .checkpoint import RawCheckpoint, read_checkpoint, resolve, unpack
from .errors import CheckpointError, SwamlaError
from .model.config import ModelConfig
from .model.generation import (
    config_notices,
    engram_token_map,
    model_card_lines,
    parse_generation,
    resolve_model,
    stored_dtypes,
)
from .model.transformer import SWAMLA, wants_column_major
from .params import SamplingParams

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise SwamlaError(f"unsupported dtype {dtype}: use float32, float16 or bfloat16")
        return dtype
    if dtype is None or str(dtype).lower() == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise SwamlaError(f"unknown dtype '{dtype}': use float32, float16 or bfloat16")
    return _DTYPES[key]


def pick_device(device: str | torch.device | None, notices: list[str]) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto'; CUDA that is absent or unusable falls back to CPU."""
    want = str(device or "auto").lower()
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(want)
    except RuntimeError:
        raise SwamlaError(f"unknown device '{device}': use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            notices.append("CUDA is not available: running on the CPU")
            return torch.device("cpu")
        try:  # a GPU the installed PyTorch has no kernels for fails here, not mid-reply
            (torch.ones(2, device=dev) * 2).sum().item()
        except Exception as e:  # noqa: BLE001
            first = (str(e).splitlines() or [type(e).__name__])[0]
            notices.append(f"CUDA device unusable ({first[:80]}): running on the CPU")
            return torch.device("cpu")
    elif dev.type != "cpu":
        raise SwamlaError(f"unsupported device '{device}': use cpu, cuda, cuda:N or auto")
    return dev


@dataclass
class BatchResult:
    index: int
    prompt: str
    completion: str
    new_tokens: int
    seconds: float
    finish_reason: str
    truncated: bool = False


class LoadedModel:
    """A loaded checkpoint: model, tokenizer and the generation entry points."""

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
    ) -> None:
        self.model = model
        self.config = config
        self.tokenizer = tokenizer
        self.source = source
        self.meta = meta
        self.max_length = max_length
        self.stored_dtype = stored_dtype
        self.notices = notices
        self.device = model.transformer.wte.weight.device
        self.dtype = model.transformer.wte.weight.dtype
        self.eos_id: int | None = getattr(tokenizer, "eos_token_id", None) if tokenizer else None
        self.use_cuda_graph = self.device.type == "cuda" and os.environ.get(
            "SWAMLA_CUDA_GRAPHS", "1"
        ) not in ("0", "false")
        # the graph loop does not save/restore recurrent state around its warm-up runs
        self.use_cuda_graph = self.use_cuda_graph and not model.has_recurrent_state
        self._pool: dict[tuple[int, int], Any] = {}
        self._lock = threading.Lock()

    # -- description ------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return self.model.num_params()

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
        card["tokenizer"] = (
            getattr(self.tokenizer, "name_or_path", "?") if self.tokenizer else "none"
        )
        return card

    # -- text ---------------------------------------------------------------------
    def _need_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise SwamlaError("no tokenizer loaded: pass --tokenizer PATH")
        return self.tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self._need_tokenizer().encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self._need_tokenizer().decode(list(ids), skip_special_tokens=False)

    # -- the reference path ---------------------------------------------------------
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Plain full causal forward from position 0: LongTensor [B, T] -> logits [B, T, V]."""
        with torch.inference_mode():
            return self.model(ids.to(self.device)).float()

    # -- generation -------------------------------------------------------------------
    def cache_pool(self, batch: int, size: int, pad: int) -> tuple[Any, Any]:
        """Caches (and, on CUDA, the captured decode graph) are allocated once per shape."""
        from .engine.decoder import GraphLoop

        if not self.use_cuda_graph:
            return self.model.setup_cache(batch, size, pad=pad), None
        size = self.max_length + pad  # one shape per batch size: the graph is reused
        key = (batch, size, pad)
        with self._lock:
            if key not in self._pool:
                if len(self._pool) > 4:
                    self._pool.clear()
                cache = self.model.setup_cache(batch, size, pad=pad)
                self._pool[key] = (cache, GraphLoop(self.model, cache))
            return self._pool[key]

    def _params(self, params: SamplingParams | None, overrides: dict[str, Any]) -> SamplingParams:
        p = params if params is not None else SamplingParams()
        for k, v in overrides.items():
            if not hasattr(p, k):
                raise TypeError(f"unknown sampling parameter '{k}'")
            setattr(p, k, v)
        return p

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
        from .engine.generate import Generation

        params = SamplingParams(temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed)
        bs = batch_size or self.default_batch_size()
        out: list[list[int]] = []
        for i in range(0, len(prompts), bs):
            gen = Generation(
                self.model,
                prompts[i : i + bs],
                params,
                max_length=self.max_length,
                eos_id=self.eos_id,
                use_graph=self.use_cuda_graph,
                cache_pool=self.cache_pool,
            )
            for _ in gen:
                pass
            out.extend(r.new for r in gen.rows)
        return out

    def stream(
        self,
        text: str,
        params: SamplingParams | None = None,
        *,
        stop: Sequence[str] = (),
        **overrides: Any,
    ) -> Any:
        from .engine.stream import TokenStream

        p = self._params(params, overrides)
        return TokenStream(self, self.encode(text), p, stop)

    def generate(self, text: str, *, stop: Sequence[str] = (), **kw: Any) -> str:
        s = self.stream(text, SamplingParams(), stop=stop, **kw)
        return "".join(s)

    def default_batch_size(self) -> int:
        return 64 if self.device.type == "cuda" else 16

    def generate_batch(
        self,
        texts: Sequence[str],
        params: SamplingParams | None = None,
        *,
        batch_size: int | None = None,
        stop: Sequence[str] = (),
        cancel: threading.Event | None = None,
    ) -> Iterator[BatchResult]:
        """Run prompts in batches; yield each result as its row finishes.

        `params` is read when each batch starts (and live within it), so a change applies
        to prompts not yet started.
        """
        from .engine.generate import Generation

        p = params or SamplingParams()
        bs = batch_size or self.default_batch_size()
        cancel = cancel or threading.Event()
        for start in range(0, len(texts), bs):
            chunk = list(texts[start : start + bs])
            if cancel.is_set():
                for j, t in enumerate(chunk):
                    yield BatchResult(start + j, t, "", 0, 0.0, "cancelled")
                continue
            ids = [self.encode(t) for t in chunk]
            gen = Generation(
                self.model,
                ids,
                p,
                max_length=self.max_length,
                eos_id=self.eos_id,
                cancel=cancel,
                use_graph=self.use_cuda_graph,
                cache_pool=self.cache_pool,
            )
            t0 = time.perf_counter()
            reported = [False] * len(chunk)
            for step in gen:
                for j, tok in enumerate(step):
                    r = gen.rows[j]
                    if tok is not None and stop and r.finish is None:
                        txt = self.decode(r.new)
                        if any(s in txt for s in stop):
                            gen.finish(j, "stop")
                    if r.finish is not None and not reported[j]:
                        reported[j] = True
                        yield self._result(start + j, chunk[j], r, t0, stop)
            for j, r in enumerate(gen.rows):
                if not reported[j]:
                    yield self._result(start + j, chunk[j], r, t0, stop)

    def _result(
        self, index: int, prompt: str, r: Any, t0: float, stop: Sequence[str]
    ) -> BatchResult:
        new = [t for t in r.new if t != self.eos_id]
        text = self.decode(new) if new else ""
        for s in stop:
            if s in text:
                text = text[: text.index(s)]
        return BatchResult(
            index=index,
            prompt=prompt,
            completion=text,
            new_tokens=len(r.new),
            seconds=time.perf_counter() - t0,
            finish_reason=r.finish or "cancelled",
            truncated=r.truncated,
        )


# ------------------------------------------------------------------------------ load()
def _drop_mapped_pages(t: torch.Tensor) -> None:
    """Let the kernel drop the file pages of a copied tensor (Linux; best effort).

    Only for tensors in a read-only use of a private file mapping (torch.load mmap=True):
    a dropped page is read again from the file if touched, so nothing is lost; it keeps
    peak RSS near one copy of the weights instead of two.
    """
    if not sys.platform.startswith("linux") or t.numel() == 0:
        return
    try:
        import ctypes
        import mmap

        page = mmap.PAGESIZE
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        a, b = -(-start // page) * page, end // page * page  # whole pages inside the tensor
        if b > a:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(b - a), 4)  # MADV_DONTNEED
    except Exception:  # noqa: BLE001 - an optimisation only
        return


def _build(
    raw: RawCheckpoint,
    device: torch.device,
    dtype: torch.dtype,
    swa_attention: str,
    max_length: int | None,
    tokenizer: Any,
    notices: list[str],
    source: str,
    mapped: bool = False,
    generation: str | None = None,
    engram_mapping: Sequence[int] | None = None,
    train_args: dict[str, Any] | None = None,
) -> LoadedModel:
    args = {**raw.args, **(train_args or {})}
    wkey = str(raw.meta.get("weights_key", ""))
    cfg, weights, why = resolve_model(raw.state_dict, raw.args, wkey, generation, train_args)
    raw.meta["generation"] = f"{cfg.generation}: {why}"
    notices.extend(config_notices(cfg, args))
    stored, bf16_experts = stored_dtypes(weights)
    if len(stored) > 1 and not bf16_experts:  # bf16 routed experts: normal since Jan 30 2026
        to = str(dtype).removeprefix("torch.")
        notices.append(f"mixed stored dtypes ({', '.join(stored)}): converted whole to {to}")
    with torch.device("meta"):
        model = SWAMLA(cfg, swa_window=(swa_attention == "window"))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = set(shapes)
    # the head is tied to the embedding: a state dict may store it once, under wte
    missing = sorted(expected - set(weights) - {"lm_head.weight"})
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise CheckpointError(
            f"{source}: not an SWA-MLA state dict: missing {', '.join(missing[:3])}{more}"
        )
    unexpected = sorted(set(weights) - expected)
    if unexpected:
        notices.append(f"ignored {len(unexpected)} unknown tensors (e.g. {unexpected[0]})")
    for k in expected & set(weights):
        want = shapes[k]
        if tuple(weights[k].shape) != want:
            raise CheckpointError(
                f"{source}: tensor {k} has shape {tuple(weights[k].shape)}, expected {tuple(want)}"
            )
    # CPU float32: tall/square matrices column-major (faster matrix-vector products;
    # in bfloat16 row-major is faster), written straight from the checkpoint so no
    # second copy of the weights is ever held
    colmajor = (
        device.type == "cpu"
        and dtype == torch.float32
        and os.environ.get("SWAMLA_CPU_LAYOUT", "1") != "0"
    )
    tensors = {}
    for k in expected:
        if k == "lm_head.weight":
            continue
        src = weights[k]
        t = src.to(device=device, dtype=dtype if src.is_floating_point() else None)
        if colmajor and wants_column_major(k, t.shape):
            t = t.t().contiguous().t()
        elif mapped and t.data_ptr() == src.data_ptr():
            # still the checkpoint's memory map: a trainer overwriting the file in place
            # would crash us (SIGBUS) mid-reply, so the weights get memory of their own
            t = t.clone()
        if mapped and t.data_ptr() != src.data_ptr():
            _drop_mapped_pages(src)
        tensors[k] = t
    model.load_state_dict(tensors, strict=False, assign=True)
    model.lm_head.weight = model.transformer.wte.weight  # keep the tie after assign
    model.init_buffers(device)  # RoPE tables were created on meta
    model.eval().requires_grad_(False)
    model.prepare(column_major=colmajor)  # fused products for decoding (DeltaNet, MoE)
    if cfg.engram is not None:
        model.set_token_mapping(engram_token_map(cfg, tokenizer, engram_mapping, source))
    ml = min(int(max_length or cfg.block_size), cfg.block_size)
    if max_length and max_length > cfg.block_size and max_length != 2048:
        notices.append(f"max_length {max_length} is above block_size: using {cfg.block_size}")
    return LoadedModel(
        model,
        cfg,
        tokenizer,
        source=source,
        meta=raw.meta,
        max_length=ml,
        stored_dtype=", ".join(stored),
        notices=notices,
    )


def load(
    source: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = torch.float32,
    tokenizer: str | os.PathLike[str] | bool | None = None,
    hf_checkpoint: str | None = None,
    swa_attention: str = "full",
    max_length: int | None = 2048,
    progress: Callable[[str], None] | None = None,
    generation: str = "auto",
    engram_mapping: Sequence[int] | None = None,
    train_args: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a checkpoint file, a local folder or a Hub repo id (see the README).

    `generation`: "auto" (default) dates the checkpoint from its weights and saved config
    (v2 spec §1); "G1".."G6" overrides the two switches invisible in the weights (MLA q_pe
    rotation, dense-MLP SiLU half), e.g. for a bare state dict. `engram_mapping`: the
    token -> canonical id list an Engram model uses instead of the one built from the
    tokenizer. `train_args`: training-argument entries that override or complete the
    checkpoint's saved config (e.g. {"n_activated": 2}: the MoE top-k is in no weight).
    """
    say = progress or (lambda _s: None)
    parse_generation(generation)  # a bad value fails before the file is read
    if swa_attention not in ("full", "window"):
        raise SwamlaError(f"swa_attention must be 'full' or 'window', not '{swa_attention}'")
    notices: list[str] = []
    dev = pick_device(device, notices)
    dt = parse_dtype(dtype, dev)
    if dev.type == "cpu" and dt == torch.float16:
        notices.append("float16 on the CPU is slow; bfloat16 or float32 are faster")
    say(f"Finding {source}")
    res = resolve(source, hf_checkpoint, progress)
    say(f"Reading {res.path.name}")
    raw = unpack(read_checkpoint(res.path), str(res.path))
    tok: Any = None
    if tokenizer is not False:
        from .tokenizer import load_tokenizer

        say("Loading tokenizer")
        name = str(raw.args.get("tokenizer_name") or "openai-community/gpt2")
        spec = None if tokenizer is None or tokenizer is True else tokenizer
        tok = load_tokenizer(spec, folder=res.folder, name=name)
    say(f"Building model on {dev}")
    mapped = zipfile.is_zipfile(res.path)  # read_checkpoint memory-maps zip-format files
    lm = _build(
        raw, dev, dt, swa_attention, max_length, tok, notices, res.label, mapped,
        generation=generation, engram_mapping=engram_mapping, train_args=train_args,
    )  # fmt: skip
    if tok is not None and len(tok) > lm.config.vocab_size:
        lm.notices.append(
            f"tokenizer has {len(tok)} tokens but the model only {lm.config.vocab_size}"
        )
    return lm


__all__ = ["load", "LoadedModel", "BatchResult", "parse_dtype", "pick_device"]
