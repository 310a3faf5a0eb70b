"""Shared test helpers: the fixtures shipped in tests/fixtures/ and a test-built tokenizer."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from torch import nn

    from swamla_tui.model.transformer import SWAMLA

    M = TypeVar("M", bound=nn.Module)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
# Parity tests run on this device; the GPU check script sets it to "cuda".
TEST_DEVICE = os.environ.get("SWAMLA_TEST_DEVICE", "cpu")
FIXTURE_DIR = FIXTURES / "reference"
FIXTURE_CKPT = FIXTURE_DIR / "tiny_train.pt"
FIXTURE_EXPECTED = FIXTURE_DIR / "tiny_train.expected.pt"

V2_DIR = FIXTURES / "v2"
V2_CKPT = V2_DIR / "deltanet_moe_train.pt"
V2_EXPECTED = V2_DIR / "deltanet_moe_train.expected.pt"
V2_TOKENIZER = V2_DIR / "tok384"


_CORPUS = (
    "You: Hello there, how are you today?\nAssistant: I am fine, thank you. How can I help?\n"
    "You: What is a list in Python?\nAssistant: A list is an ordered, mutable sequence.\n"
    "The quick brown fox jumps over the lazy dog. Once upon a time, in a land far away, "
    "there lived a model that liked to talk about science and magic. "
    "Numbers 0123456789, punctuation: ;:!?()[]{}<>/\\|@#$%^&*-+=_~`'\" and unicode: é ü ß 日本 🙂\n"
)


@lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 20, trainer=trainer)
    return tok.to_str()


def layer(model: SWAMLA, i: int, kind: type[M]) -> M:
    """Block `i` of `model` as its class: `transformer.h` is an `nn.ModuleList`, whose items
    the type checker sees as plain modules."""
    blk = model.transformer.h[i]
    assert isinstance(blk, kind), f"layer {i} is a {type(blk).__name__}, not a {kind.__name__}"
    return blk


def make_test_tokenizer(folder: Path) -> Path:
    """Write a <=512-token byte-level BPE tokenizer (fits the fixture's vocab) into `folder`."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
    )
    fast.save_pretrained(str(folder))
    return folder


# ------------------------------------------------------------------ v2: synthetic checkpoints
def random_init_(model, seed: int = 0) -> None:
    """Seeded random values for every tensor (nothing identity or zero), as the fixtures do."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("alpha"):
                p.copy_(0.3 + 0.5 * torch.rand(p.shape, generator=g))
            elif p.ndim == 1 and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.05 * r)
            else:
                p.copy_(0.08 * r)
        for name, b in model.named_buffers():
            if name.endswith("expert_bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("hash_seeds"):  # large enough that the int64 products wrap
                b.copy_(torch.randint(1, 2**62, b.shape, generator=g))


def v2_args(cfg, **extra):
    """The saved argument dict that dates `cfg.generation` and carries the MoE top-k."""
    args = {"size": "moe-1b", "block_size": cfg.block_size, "tokenizer_name": "tok384"}
    args.update(
        {
            "G3": {"use_moe": True, "use_flash_attention": True, "swa_window": cfg.swa_window},
            "G4": {"deltanet_latent_dim": 0, "compile_mode": "default"},
            "G5": {"deltanet_latent_dim": 0, "resume_from": None},
            "G6": {"deltanet_latent_dim": 0, "resume_from": None, "use_triton_kernels": True},
        }.get(cfg.generation, {})
    )
    if cfg.moe is not None:
        m = cfg.moe
        if m.latent:
            args.update(n_activated=1, latent_ratio=2, latent_n_activated=m.top_k)
        else:
            args.update(n_activated=m.top_k)
    if cfg.engram is not None:
        e = cfg.engram
        args.update(
            use_engram=True,
            engram_layers=",".join(map(str, e.layers)),
            engram_ngram_orders=",".join(map(str, e.orders)),
        )
    args.update(extra)
    return args


def v2_state_dict(model, *, old_layout=False, bf16_experts=False, prefix="_orig_mod."):
    """The model's tensors as the trainer stores them (DyT alpha as a 0-dim scalar)."""
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach().clone()
        if k.endswith(".alpha"):
            v = v.reshape(())
        if ".ffn.experts." in k and k.endswith("_weight"):
            if old_layout:
                v = v.transpose(1, 2).contiguous()
            if bf16_experts:
                v = v.bfloat16()
        sd[prefix + k] = v
    return sd


def block_tensors(sd, layer: int, sub: str):
    """`transformer.h.<layer>.<sub>.*` of a prefix-free state dict, keys relative to it."""
    p = f"transformer.h.{layer}.{sub}."
    return {
        k[len(p) :]: v.float() if v.is_floating_point() else v
        for k, v in sd.items()
        if k.startswith(p)
    }


# ------------------------------------------------------------------ v2: plain reference math
def ref_rms(x, w, eps: float = 1e-6):
    return w * (x / (x * x).mean(-1, keepdim=True).add(eps).sqrt())


def ref_deltanet(t, u, heads: int):
    """GatedDeltaNet attn (formats v2 §5.2) on one row u [T, C], written out token by token."""
    import torch
    import torch.nn.functional as F

    n, c = u.shape
    d = c // heads

    def proj(nm):
        if f"{nm}_proj.weight" in t:
            return u @ t[f"{nm}_proj.weight"].T
        return (u @ t[f"{nm}_down.weight"].T) @ t[f"{nm}_up.weight"].T

    shared = "qk_proj.weight" in t or "qk_down.weight" in t
    zq, zk = (proj("qk"), proj("qk")) if shared else (proj("q"), proj("k"))

    def conv(z, name):
        w, b = t[f"{name}.conv.weight"][:, 0], t[f"{name}.conv.bias"]  # [P, K], [P]
        kk = w.shape[1]
        rows = []
        for i in range(n):
            acc = b.clone()
            for j in range(kk):
                if i - (kk - 1) + j >= 0:
                    acc = acc + w[:, j] * z[i - (kk - 1) + j]
            rows.append(acc)
        return torch.stack(rows)

    q, k, v = conv(zq, "q_conv"), conv(zk, "k_conv"), conv(proj("v"), "v_conv")
    g = F.logsigmoid(u @ t["g_proj.weight"].T)
    beta = torch.sigmoid(u @ t["beta_proj.weight"].T)
    o = torch.zeros(n, heads * d)
    for h in range(heads):
        s = torch.zeros(d, d)
        sl = slice(h * d, (h + 1) * d)
        for i in range(n):
            ki = k[i, sl] / torch.clamp((k[i, sl] ** 2).sum(), min=1e-12).sqrt()
            s = torch.exp(g[i, h]) * s
            delta = beta[i, h] * (v[i, sl] - s.T @ ki)
            s = s + torch.outer(ki, delta)
            o[i, sl] = s.T @ (q[i, sl] * d**-0.5)
    if "o_proj.weight" in t:
        return o @ t["o_proj.weight"].T
    return (o @ t["o_down.weight"].T) @ t["o_up.weight"].T


def ref_route(a, bias, k: int):
    """Experts chosen by a + bias (sorted in Python) and weights a_sel / (sum + 1e-9)."""
    score = (a + bias).tolist()
    sel = sorted(range(len(score)), key=lambda e: -score[e])[:k]
    w = a[sel] / (a[sel].sum() + 1e-9)
    return sel, w


def ref_moe(t, x, top_k: int, layout: str = "new"):
    """MoE / latent MoE ffn (formats v2 §6) on tokens x [N, C], one token and expert at a time."""
    import torch
    import torch.nn.functional as F

    latent = "up_proj.weight" in t
    n_shared = len({k.split(".")[1] for k in t if k.startswith("shared_experts.")})
    out = []
    for xn in x:
        a = torch.sigmoid(t["router.gate.weight"] @ xn)
        sel, w = ref_route(a, t["router.expert_bias"], top_k)
        y = torch.zeros_like(xn)
        for j in range(n_shared):
            gg, uu = (t[f"shared_experts.{j}.gate_up_proj.weight"] @ xn).chunk(2)
            y = y + t[f"shared_experts.{j}.down_proj.weight"] @ (F.silu(gg) * uu)
        xe = t["down_proj.weight"] @ xn if latent else xn
        r = torch.zeros_like(xe)
        for wj, e in zip(w, sel, strict=True):
            gu, dw = t["experts.gate_up_weight"][e], t["experts.down_weight"][e]
            if layout == "new":
                h = xe @ gu
                f = h.shape[0] // 2
                r = r + wj * ((F.silu(h[:f]) * h[f:]) @ dw)
            else:
                h = gu @ xe
                f = h.shape[0] // 2
                r = r + wj * (dw @ (F.silu(h[:f]) * h[f:]))
        out.append(y + (t["up_proj.weight"] @ r if latent else r))
    return torch.stack(out)


def _wrap64(v: int) -> int:
    return (v + 2**63) % 2**64 - 2**63


def ref_engram(t, x, ids, mapping, orders, heads: int):
    """Engram (formats v2 §7.2) on one row: residual x [T, C], token ids [T]."""
    import torch
    import torch.nn.functional as F

    c = [int(mapping[i]) for i in ids]
    seeds = t["embeddings.hash_seeds"].tolist()
    rows = []
    for i in range(len(c)):
        parts = []
        for n in orders:
            gram = [c[i - n + 1 + j] if i - n + 1 + j >= 0 else 0 for j in range(n)]
            for h in range(heads):
                hv = 0
                for j in range(min(n, 3)):  # only the first three terms (quirk)
                    hv ^= _wrap64(gram[j] * seeds[j][h])
                tab = t[f"embeddings.tables.n{n}_h{h}.weight"]
                parts.append(tab[hv % tab.shape[0]])
        rows.append(torch.cat(parts))
    m = torch.stack(rows)
    width = x.shape[1]
    v = m @ t["gating.w_v.weight"].T
    kk = m @ t["gating.w_k.0.weight"].T
    qn, kn = ref_rms(x, t["gating.query_norm.weight"]), ref_rms(kk, t["gating.key_norm.weight"])
    z = torch.sigmoid((qn * kn).sum(-1, keepdim=True) / width**0.5) * v
    nz = ref_rms(z, t["conv.norm.weight"])
    w = t["conv.conv.weight"][:, 0]  # [C, Kc]
    kc, dil = w.shape[1], max(orders)
    y = torch.zeros_like(z)
    for i in range(len(c)):
        for j in range(kc):
            src = i - (kc - 1 - j) * dil
            if src >= 0:
                y[i] = y[i] + w[:, j] * nz[src]
    return F.silu(y) + z


def ref_mla(t, x, heads: int, dn: int, dr: int, dv: int, by_position: bool):
    """MLA attention (formats v1 §5, formats v2 §3.3) on one row x [T, C]: q_pe by head index or position."""
    import math

    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    if "wq.weight" in t:
        q = x @ t["wq.weight"].T
    else:
        qa = x @ t["wq_a.weight"].T
        qa = F.layer_norm(qa, qa.shape[-1:], t["q_norm.weight"], t["q_norm.bias"], 1e-5)
        q = qa @ t["wq_b.weight"].T
    q = q.view(n, heads, dn + dr)
    r = t["kv_norm.weight"].shape[0]
    kva = x @ t["wkv_a.weight"].T
    cn = F.layer_norm(kva[:, :r], (r,), t["kv_norm.weight"], t["kv_norm.bias"], 1e-5)
    kv = (cn @ t["wkv_b.weight"].T).view(n, heads, dn + dv)

    def rope(vec, p):
        out = vec.clone()
        for i in range(dr // 2):
            ang = p * 10000 ** (-2 * i / dr)
            a, b = vec[2 * i], vec[2 * i + 1]
            out[2 * i] = a * math.cos(ang) - b * math.sin(ang)
            out[2 * i + 1] = b * math.cos(ang) + a * math.sin(ang)
        return out

    kpe = torch.stack([rope(kva[j, r:], j) for j in range(n)])
    y = torch.zeros(n, heads, dv)
    for h in range(heads):
        for i in range(n):
            qpe = rope(q[i, h, dn:], i if by_position else h)
            s = (
                torch.stack([q[i, h, :dn] @ kv[j, h, :dn] + qpe @ kpe[j] for j in range(i + 1)])
                * (dn + dr) ** -0.5
            )
            y[i, h] = torch.softmax(s, 0) @ kv[: i + 1, h, dn:]
    return y.reshape(n, heads * dv) @ t["wo.weight"].T


V2_VARIANTS = (
    "latent_deltanet",
    "latent_shared_qk",
    "shared_qk_standard_moe",
    "q_lora_g4_dense",
    "old_layout_g5",
    "engram",
    "bf16_experts",
    "wedlm",
    "flash_swa_g3",
)


def v2_variant_config(name: str):
    """Small synthetic configs for the variants the v2 fixture lacks (C 48, 5 heads: P 45)."""
    from swamla_tui.model.config import (
        DeltaNetConfig,
        EngramConfig,
        LayerKind,
        ModelConfig,
        MoEConfig,
    )

    c, heads = 48, 5
    dn = DeltaNetConfig(n_head=heads, head_dim=c // heads, conv_kernel=4)
    latent = MoEConfig(
        latent=True, n_experts=12, top_k=3, n_shared=1, shared_dim=32, expert_dim=8, width=12
    )
    standard = MoEConfig(
        latent=False, n_experts=6, top_k=2, n_shared=2, shared_dim=24, expert_dim=16, width=c
    )
    kinds: list[LayerKind] = ["deltanet", "deltanet", "mla", "deltanet", "deltanet", "mla"]
    cfg = ModelConfig(
        n_layer=6, n_embd=c, n_head=heads, n_kv_head=heads, vocab_size=384, block_size=96,
        layer_kinds=kinds, kv_lora_rank=20, qk_nope_head_dim=8, qk_rope_head_dim=6,
        v_head_dim=10, mlp_hidden=4 * c, tokenizer_name="tok384", generation="G6",
        kv_ranks=[0, 0, 20, 0, 0, 40], deltanet=dn, moe=latent,
    )  # fmt: skip
    if name == "latent_deltanet":
        dn.latent_dim = 16
    elif name == "latent_shared_qk":
        dn.latent_dim, dn.share_qk, dn.conv_kernel = 16, True, 3
    elif name == "shared_qk_standard_moe":
        dn.share_qk, cfg.moe, cfg.generation = True, standard, "G5"
    elif name == "q_lora_g4_dense":
        cfg.q_lora_rank, cfg.moe, cfg.generation = 16, None, "G4"
    elif name == "old_layout_g5":
        cfg.moe, cfg.generation = standard, "G5"
    elif name == "engram":
        cfg.engram = EngramConfig(
            layers=[2, 5], orders=[2, 4], n_hash_heads=2, table_sizes=[31, 37, 41, 43],
            slot=6, conv_kernel=3, n_seed_rows=4,
        )  # fmt: skip
    elif name == "wedlm":
        dn.wedlm, dn.wedlm_pos_rows, dn.wedlm_gate_out = True, 2 * cfg.block_size, c
    elif name == "flash_swa_g3":
        cfg.layer_kinds = ["swa", "swa", "mla", "swa", "swa", "mla"]
        cfg.deltanet, cfg.moe, cfg.generation, cfg.swa_flash = None, standard, "G3", True
        cfg.n_head, cfg.n_kv_head, cfg.swa_window, cfg.swa_sink_size = 4, 2, 8, 4
        cfg.qk_nope_head_dim, cfg.v_head_dim = 12, 12
    return cfg


def make_chatml_tokenizer(folder: Path) -> Path:
    """The test tokenizer with ``<|im_start|>`` / ``<|im_end|>`` added as special tokens
    (as instruction-tuned checkpoints ship them); ids stay below the fixture's vocab."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_str(_tokenizer_json())
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    fast.save_pretrained(str(folder))
    return folder


@lru_cache(maxsize=1)
def fixture_checkpoint() -> dict[str, Any]:
    """The reference fixture as `read_checkpoint` returns it (read once per process)."""
    from swamla_tui.checkpoint.reader import read_checkpoint

    return read_checkpoint(FIXTURE_CKPT)


def fixture_state_dict() -> dict[str, Any]:
    """The fixture's weights without the `_orig_mod.` prefix (a fresh dict each call)."""
    return {k.removeprefix("_orig_mod."): v for k, v in fixture_checkpoint()["model"].items()}


def fixture_args() -> dict[str, Any]:
    """The fixture's training argument dict (a fresh copy each call)."""
    return dict(fixture_checkpoint()["config"])


@lru_cache(maxsize=1)
def fixture_expected() -> dict[str, Any]:
    """The fixture's reference input ids and float32 logits."""
    import torch

    return dict(torch.load(FIXTURE_EXPECTED, map_location="cpu", weights_only=True))


def fixture_max_diff(lm: Any) -> float:
    """Max |logits - reference| of a model loaded from the fixture (float32 comparison)."""
    exp = fixture_expected()
    got = lm.logits(exp["input_ids"])
    assert got.shape == exp["logits"].shape
    return float((got.float() - exp["logits"]).abs().max())


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter from the repository root (clean `sys.modules`, a file
    no longer open in this process...); its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def assert_imports_leave_out(modules: list[str], heavy: tuple[str, ...], then: str = "") -> None:
    """Import `modules` in a fresh interpreter, run `then`; none of `heavy` (nor a submodule
    of one) may be loaded afterwards."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import swamla_tui\n"
        f"{then}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})\n"
        "assert not bad, bad[:5]\n"
        "print('ok')\n"
    )
    r = run_python(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "ok"


def ragged_decode_max_error(lm: Any, ids: Any, steps: int = 100) -> float:
    """Max |logits| difference between cached decoding and the full forward on the two
    rows of `ids`: left-padded prefills of 10 and 3 tokens, then one token per step."""
    import torch

    from swamla_tui.engine.decoder import BatchDecoder

    ref = lm.logits(ids).cpu()
    dec = BatchDecoder(lm.model, max_length=128)
    errs = []
    with torch.inference_mode():
        lg = dec.prefill([ids[0, :10].tolist(), ids[1, :3].tolist()], capacity=120).float().cpu()
        errs += [(lg[0] - ref[0, 9]).abs().max(), (lg[1] - ref[1, 2]).abs().max()]
        for s in range(steps):
            a, b = 10 + s, 3 + s
            lg = dec.step(torch.tensor([ids[0, a].item(), ids[1, b].item()], device=dec.device))
            lg = lg.float().cpu()
            errs += [(lg[0] - ref[0, a]).abs().max(), (lg[1] - ref[1, b]).abs().max()]
    return max(float(e) for e in errs)


@contextmanager
def process_running(code: str, ready: str) -> Iterator[None]:
    """Python `code` in a second process (from the repository root), entered once it prints
    `ready`; it ends when it reads a line on stdin, which leaving the block sends. For
    tests of locks that must hold across processes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == ready
        yield
    finally:
        proc.communicate("\n", timeout=30)
