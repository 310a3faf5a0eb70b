"""Int8 weights for CPU decoding: `load(..., quantize="int8")` (the package's loader).

Every big projection (attention, MLP, shared-expert and DeltaNet projections that run as
their own module) is stored as int8 with one symmetric scale per *output* channel
(w ≈ q * s, q in [-127, 127], s = max|w_row| / 127), and the tied LM head gets its own
int8 copy (the embedding stays in the running dtype: a lookup reads one row per token,
so quantizing it saves memory but no time). Left in the running dtype: MLA's `wkv_b`
(the absorbed cached path views its weight per head; 1M values), products fused by
`RowFusion` (DeltaNet/MoE inputs), routed experts, norms and biases.

Three kernels, all maintained by PyTorch (no hand-written dequantize-then-matmul); "int8"
is the fastest this CPU offers (`pick_int8`: int8-dynamic, else int8-split, else
int8-weight; issue 27 asked for the fastest, its quality cost is in README/BENCHMARKS):
- "int8-split": int8 x int8 products in oneDNN's int8 matmul (`onednn::qlinear_pointwise`
  on a prepacked weight, the op PyTorch's x86 inductor quantization lowers to; exact int32
  sums, then the per-channel weight scale). Each input row is scaled to max |x| = 127 and
  split into two int8 rows, the rounded value and its rounding remainder times 254,
  multiplied in one call ([2M, K] rows, the weight read once): the input keeps ~15 bits,
  so the quality is weight-only int8's with float32 inputs, at an int8 GEMM's speed.
  Offered where torch runs AVX-512 kernels, the CPU has AVX512-VNNI and a probe product
  comes out exact (without VNNI oneDNN's 16-bit pair sums saturate, or it runs scalar
  reference code: `split_cpu_problem`). The int8 rows go in as uint8 with zero point 128
  (`INPUT_ZERO`): oneDNN's VNNI kernel takes those without AMX.
- "int8-weight" (weight-only): `aten._weight_int8pack_mm` with bfloat16 activations (for
  a float32 model too: the kernel's float32 input path is scalar code, 3-9x slower than
  float32 weights; bfloat16 inputs are vectorised on AVX2 and AVX-512), products
  accumulated in float32 and rounded to bfloat16; calls with more than
  `WEIGHT_ONLY_MAX_ROWS` rows use a bfloat16 copy of the weight and a GEMM instead.
  Refused on CPUs whose torch kernels are neither AVX2 nor AVX-512 (scalar there).
- "int8-dynamic": FBGEMM's dynamic linear (`quantized::linear_dynamic`, the kernel of
  `torch.ao` dynamic quantization): the same int8 weights, and each call also quantizes
  its input to 8 bits, or 7 where its kernel adds pairs in saturating 16 bits (AVX2
  without VNNI: `reduce_range`, probed by `fbgemm_full_range`). At a measured quality cost
  (README).
The quantized modules expose `weight` (dequantized, computed on use) for code that reads
shapes or dtypes; the float weights themselves are released.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Literal, cast, get_args

import torch
from torch import Tensor, nn

from ..base.errors import SwamlaError
from .fuse import RowFusion

Quantize = Literal["int8", "int8-split", "int8-weight", "int8-dynamic"]
QUANTIZE_CHOICES: tuple[str, ...] = get_args(Quantize)
# the remainder row is (t - round(t)) * SPLIT_LO for t in [-127, 127]: |remainder| <= 127
SPLIT_LO = 254.0
# input rows up to which the split kernel adds hi and lo with one float product (`_split`)
SPLIT_MM_MAX_ROWS = 16

# up to this many rows per call (decode steps of up to 8 sequences) the weight-only
# kernel; above it (prefill, larger batches) a bfloat16 copy of the weight and a GEMM.
# Measured on the AVX-512/AMX Xeon (1 thread, 8192 x 1024): 8 rows 5.8 ms vs 8.4 (copy) vs
# 7.5 (float32); 16 rows 12.5 vs 8.8 vs 12.8; 64 rows 43 vs 13 vs 29 (BENCHMARKS.md).
WEIGHT_ONLY_MAX_ROWS = 8
# bfloat16 weight values copied per block above that (2 MiB: stays in a 4 MiB L2)
COPY_BLOCK_VALUES = 1 << 20

# torch CPU kernel levels (`torch.backends.cpu.get_cpu_capability()`) where
# `_weight_int8pack_mm` has a vectorised bfloat16 path; elsewhere it runs scalar code
# (measured with ATEN_CPU_CAPABILITY=default: 8x slower than float32) and is refused.
WEIGHT_ONLY_CAPABILITIES = ("AVX2", "AVX512", "AVX512_BF16")


def check_weight_only_cpu(capability: str | None = None) -> None:
    """`--quantize int8-weight` only where its kernel is vectorised (faster than float32)."""
    cap = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    if cap.upper() not in WEIGHT_ONLY_CAPABILITIES:
        raise SwamlaError(
            f"--quantize int8 has no vectorised kernel on this CPU (torch kernels {cap}): "
            "it would run slower than float32; leave --quantize out"
        )


# int8 inputs go to oneDNN as uint8 with this zero point: its fast int8 matmul on AVX-512
# VNNI without AMX is u8 x s8 only. Signed int8 inputs ran its scalar reference code there
# (`ref_int8` in ONEDNN_VERBOSE; 4096 x 1024 at one row 126 ms, float32 ~2) on the EPYC.
INPUT_ZERO = 128


def to_onednn_input(x: Tensor) -> Tensor:
    """Integer values in [-127, 127] (any dtype) -> the uint8 input `onednn_int8_linear` takes."""
    return (x + INPUT_ZERO).to(torch.uint8)


def onednn_int8_linear(xu: Tensor, packed: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    """`to_onednn_input(x)` [M, K] times a `qlinear_prepack`ed int8 weight: float32 [M, N] =
    the exact int32 sums of x times the weight, times `scale` (per output channel)."""
    y = torch.ops.onednn.qlinear_pointwise(
        xu, 1.0, INPUT_ZERO, packed, scale, zero, None, 1.0, 0, torch.float32, "none", [], ""
    )
    return cast(Tensor, y)


@functools.cache
def int8_sums_exact() -> bool:
    """Whether oneDNN's int8 matmul sums int8 products exactly here. Without VNNI it adds
    pairs of products in 16 bits and saturates (measured with ONEDNN_MAX_CPU_ISA=AVX2 and
    AVX512_CORE: sums off by up to 16M on random int8 values): a product of known
    integers tells, whatever the CPU or oneDNN's ISA setting (sums < 2^24: exact floats)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randint(-127, 128, (48, 256), generator=g, dtype=torch.int8)
    x = torch.randint(-127, 128, (4, 256), generator=g, dtype=torch.int8)
    x[0] = 127  # 255 as uint8: pairs of 255 * 127 are the first sums to leave 16 bits
    w[0] = 127
    try:
        packed = torch.ops.onednn.qlinear_prepack(w, None)
        xu = to_onednn_input(x.to(torch.int16))
        got = onednn_int8_linear(xu, packed, torch.ones(48), torch.zeros(48, dtype=torch.int32))
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False
    return bool(torch.equal(got.double(), x.double() @ w.double().t()))


def fbgemm_prepack(q: Tensor, scale: Tensor) -> object:
    """FBGEMM's packed copy of int8 weights `q` [N, K] with per-row `scale` [N] (opaque)."""
    zp = torch.zeros(q.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # quantized-tensor constructors warn (deprecated)
        warnings.simplefilter("ignore")
        qt = torch._make_per_channel_quantized_tensor(q, scale.double(), zp, 0)
        return torch.ops.quantized.linear_prepack(qt, None)


@functools.cache
def fbgemm_full_range() -> bool:
    """Whether FBGEMM's dynamic linear may quantize inputs to 8 bits (`reduce_range` off).
    Its AVX2 kernels add pairs of u8 x s8 products in saturating 16 bits, so PyTorch keeps
    inputs to 7 bits by default; with VNNI the sums are 32-bit and the eighth bit is free
    (demo-model KL against float32 0.0057 -> 0.0017 nats). A product whose every pair would
    saturate 16 bits (inputs at 255, weights at 127) tells which kernel runs."""
    n, k = 8, 512
    x = torch.full((2, k), 1.0)
    try:
        packed = fbgemm_prepack(
            torch.full((n, k), 127, dtype=torch.int8), torch.full((n,), 1 / 127)
        )
        y = torch.ops.quantized.linear_dynamic(x, packed, False)
    except (AttributeError, RuntimeError):  # no FBGEMM here
        return False
    want = x @ torch.full((n, k), 1.0).t()
    return bool(((cast(Tensor, y) - want).abs().max() / want.abs().max()) < 0.01)


def has_vnni() -> bool:
    """AVX512-VNNI in the CPU's flags (torch's own query; private, hence the fallback)."""
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(probe()) if callable(probe) else False


def split_cpu_problem(
    capability: str | None = None, vnni: bool | None = None, exact: bool | None = None
) -> str | None:
    """Why "int8-split" is not offered here (None: it is). It was measured fast on AVX-512
    with VNNI only. Without VNNI oneDNN's int8 matmul is inexact and slow (emulated AVX2:
    16-bit pair sums saturate, max error 0.27 instead of 9e-5, and 10.9 ms vs float32's
    1.4 for 8192 x 1024 at one row) or runs its scalar reference code (emulated AVX-512
    without VNNI on the prepacked weight); the probe checks the sums themselves."""
    cap = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    if not cap.upper().startswith("AVX512"):
        return f"torch kernels {cap}, not AVX-512"
    if not (has_vnni() if vnni is None else vnni):
        return "no AVX512-VNNI"
    if not (int8_sums_exact() if exact is None else exact):
        return "oneDNN's int8 sums inexact"
    return None


def check_split_cpu() -> None:
    why = split_cpu_problem()
    if why is not None:
        raise SwamlaError(
            f"--quantize int8-split needs AVX-512 with VNNI ({why}): "
            "use --quantize int8-weight or int8-dynamic"
        )


def dynamic_cpu_problem(capability: str | None = None) -> str | None:
    """Why "int8-dynamic" is not the fast choice here (None: it is): FBGEMM is x86 code
    for AVX2 and AVX-512 (elsewhere PyTorch has no FBGEMM engine, or torch's kernels say
    the CPU lacks the vector units it was measured with)."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return "PyTorch has no FBGEMM engine here"
    cap = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    if cap.upper() not in WEIGHT_ONLY_CAPABILITIES:
        return f"torch kernels {cap}"
    return None


def pick_int8(kind: Quantize) -> Quantize:
    """ "int8" -> the fastest path this CPU offers (int8-dynamic, else int8-split, else
    int8-weight: measured in that order on the 2-core Xeon, BENCHMARKS.md); explicit names
    are checked and kept. Raises `SwamlaError` where the path is not offered."""
    if kind == "int8":
        if dynamic_cpu_problem() is None:
            return "int8-dynamic"
        if split_cpu_problem() is None:
            return "int8-split"
        kind = "int8-weight"
    if kind == "int8-split":
        check_split_cpu()
    elif kind == "int8-weight":
        check_weight_only_cpu()
    return kind


def int8_per_channel(w: Tensor) -> tuple[Tensor, Tensor]:
    """w [N, K] -> (q int8 [N, K], scale float32 [N]) with w ≈ q * scale[:, None]."""
    w32 = w.detach().float()
    amax = w32.abs().amax(dim=1)
    scale = (amax / 127.0).clamp(min=torch.finfo(torch.float32).tiny)  # an all-zero row: q 0
    q = torch.round(w32 / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scale


class Int8Linear(nn.Module):
    """y = x (q * s)ᵀ + b with `aten._weight_int8pack_mm` (int8 weights, float activations)."""

    qweight: Tensor  # buffers
    scale: Tensor
    scale_bf16: Tensor

    def __init__(
        self, weight: Tensor, bias: Tensor | None, qs: tuple[Tensor, Tensor] | None = None
    ) -> None:
        super().__init__()
        q, s = int8_per_channel(weight) if qs is None else qs  # qs: rows already int8
        self.out_features, self.in_features = q.shape
        self.float_dtype = weight.dtype
        self.register_buffer("qweight", q)
        self.register_buffer("scale", s)
        self.register_buffer("scale_bf16", s.to(torch.bfloat16))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)

    @property
    def weight(self) -> Tensor:
        """The dequantized weight (a fresh tensor: for shapes, dtypes and tests)."""
        return (self.qweight.float() * self.scale[:, None]).to(self.float_dtype)

    def forward(self, x: Tensor) -> Tensor:
        k = self.in_features
        x2 = x.reshape(-1, k)  # [M, K]
        if k % 32 != 0:
            # the bfloat16 kernel reads past the row end unless K is a multiple of 32 (it
            # crashed at K = 100 here); the float32 one is exact but not vectorised
            y = torch.ops.aten._weight_int8pack_mm(
                x2.float().contiguous(), self.qweight, self.scale
            )
        elif x2.shape[0] <= WEIGHT_ONLY_MAX_ROWS:
            # bfloat16 activations even for a float32 model: the kernel's only vectorised
            # input type (float32 inputs measured 3-9x slower than float32 weights)
            xb = x2.to(torch.bfloat16).contiguous()
            y = torch.ops.aten._weight_int8pack_mm(xb, self.qweight, self.scale_bf16)
        else:
            y = self._copy_gemm(x2.to(torch.bfloat16))
        y = cast(Tensor, y).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def _copy_gemm(self, xb: Tensor) -> Tensor:
        """Many rows: the kernel re-reads the weight per 4 rows, so a bfloat16 copy (exact:
        |q| <= 127) and a bfloat16 GEMM are faster; scales applied after. The copy is made a
        block of output rows at a time into one cache-sized buffer (a whole copy of the head
        allocated per call measured 1.7-2x slower than the block copies)."""
        n, k = self.out_features, self.in_features
        rows = max(1, COPY_BLOCK_VALUES // k)
        if n <= rows:
            wb = self.qweight.to(torch.bfloat16)
            return torch.nn.functional.linear(xb, wb).float() * self.scale
        y = torch.empty(xb.shape[0], n, dtype=torch.float32)
        buf = torch.empty(rows, k, dtype=torch.bfloat16)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            blk = buf[: r1 - r0]
            blk.copy_(self.qweight[r0:r1])
            y[:, r0:r1] = torch.nn.functional.linear(xb, blk)
        return y.mul_(self.scale)


class Int8DynamicLinear(nn.Module):
    """Int8 weights times int8 inputs quantized on the fly with one scale per token row.

    `kernel` "split": oneDNN's int8 matmul, each row as two int8 rows (value and remainder,
    the module docstring); "fbgemm": FBGEMM's dynamic linear, which quantizes its whole input
    with one scale and zero point per call, so rows are first scaled to max |x| = 1 to make
    that one scale fit every row.
    """

    qweight: Tensor  # buffers
    scale: Tensor

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        kernel: str = "fbgemm",
        qs: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        super().__init__()
        q, s = int8_per_channel(weight) if qs is None else qs  # qs: rows already int8
        self.out_features, self.in_features = q.shape
        if self.in_features * 127 * 127 >= 2**31:  # int32 sums of the split kernel
            raise SwamlaError(f"int8 product too wide ({self.in_features} inputs)")
        self.float_dtype = weight.dtype
        self.kernel = kernel
        self._zero = torch.zeros(q.shape[0], dtype=torch.int32)  # oneDNN's weight zero points
        self._scale127 = s / 127.0  # the split kernel's inputs are in units of amax / 127
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), False)
        # kept for `weight` and `_pack` (the packed copies are opaque): a quarter of float32
        self.register_buffer("qweight", q)
        self.register_buffer("scale", s)
        self._packed: object = None  # the kernel's own copy of q (opaque)
        self._pack()

    def _pack(self) -> object:
        """(Re)make the kernel's copy; `concat_quant_linears` drops the members' copies."""
        q, s = self.qweight, self.scale
        if self.kernel == "fbgemm":
            self._packed = fbgemm_prepack(q.contiguous(), s)
        else:
            self._packed = torch.ops.onednn.qlinear_prepack(q.contiguous(), None)
        return self._packed

    @property
    def weight(self) -> Tensor:
        return (self.qweight.float() * self.scale[:, None]).to(self.float_dtype)

    def forward(self, x: Tensor) -> Tensor:
        # as few ops as it takes: at one row each costs about as much as the product of a
        # small weight (this wrapper 37 -> 29 us a call at one row, FBGEMM alone 17: EPYC)
        x2 = x.reshape(-1, self.in_features)  # [M, K]
        if x2.dtype != torch.float32:
            x2 = x2.float()
        # max |x| per row: abs + amax (linalg.vector_norm(inf) measured 5-10x slower: 49
        # vs 5 us at 16 x 1024, the scaling's whole cost at 16 rows)
        amax = x2.abs().amax(dim=1, keepdim=True).clamp_(min=1e-30)  # [M, 1]
        if self.kernel == "split":
            y = self._split(x2, amax)
        else:
            packed = self._packed if self._packed is not None else self._pack()
            y = torch.ops.quantized.linear_dynamic(x2 / amax, packed, not fbgemm_full_range())
            y = cast(Tensor, y).mul_(amax)
        if self.bias is not None:
            y = y.add_(self.bias)
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        return y.view(*x.shape[:-1], self.out_features)

    def _split(self, x2: Tensor, amax: Tensor) -> Tensor:
        """x ≈ (hi + lo / 254) * amax / 127 row by row; one int8 GEMM for hi and lo. Up to
        `SPLIT_MM_MAX_ROWS` rows a [M, 2M] x [2M, N] float product adds hi and lo and applies
        the row scales in one call (it costs 2M²N: elementwise above)."""
        m = x2.shape[0]
        t = torch.div(x2, amax).mul_(127.0)  # (127.0 / amax) alone measured 9 µs a call
        hi = torch.round(t)
        lo = t.sub_(hi).mul_(SPLIT_LO).round_()  # |t - hi| <= 0.5
        xu = to_onednn_input(torch.cat([hi, lo]))  # [2M, K]
        packed = self._packed if self._packed is not None else self._pack()
        acc = onednn_int8_linear(xu, cast(Tensor, packed), self._scale127, self._zero)
        if m <= SPLIT_MM_MAX_ROWS:
            return torch.mm(_hi_lo(m) * amax, acc)  # [M, N]
        return acc[m:].mul_(1.0 / SPLIT_LO).add_(acc[:m]).mul_(amax)


@functools.cache
def _hi_lo(m: int) -> Tensor:
    """[M, 2M]: row i adds hi row i and lo row i / 254 of a split product's result (an
    ordinary tensor even when first asked for under inference mode: it is cached)."""
    with torch.inference_mode(False):
        eye = torch.eye(m)
        return torch.cat([eye, eye / SPLIT_LO], dim=1)


QuantLinear = Int8Linear | Int8DynamicLinear


def make_quant_linear(kind: Quantize, weight: Tensor, bias: Tensor | None) -> QuantLinear:
    kind = pick_int8(kind)
    if kind == "int8-weight":
        return Int8Linear(weight, bias)
    return Int8DynamicLinear(weight, bias, "split" if kind == "int8-split" else "fbgemm")


def concat_quant_linears(mods: Sequence[Int8Linear | Int8DynamicLinear]) -> QuantLinear | None:
    """One int8 module computing the members' outputs concatenated (`SharedInput`): their
    int8 rows and scales stacked as they are (no second rounding), or None where the
    members differ in kind, kernel, input width or dtype. The members' int8 rows become
    views of the new module's and their packed kernel copies are dropped (re-made if a
    member is ever called alone), so the weights are held once."""
    first = mods[0]
    same = {(type(m), getattr(m, "kernel", None), m.in_features, m.float_dtype) for m in mods}
    biases = [m.bias for m in mods]
    if len(same) != 1 or (any(b is None for b in biases) and any(b is not None for b in biases)):
        return None
    q = torch.cat([m.qweight for m in mods])
    s = torch.cat([m.scale for m in mods])
    b = None if biases[0] is None else torch.cat([x.detach() for x in biases if x is not None])
    shape = torch.Size((q.shape[0], q.shape[1]))
    meta = torch.empty(shape, dtype=first.float_dtype, device="meta")  # dtype and shape only
    out: QuantLinear
    if isinstance(first, Int8DynamicLinear):
        out = Int8DynamicLinear(meta, None, first.kernel, qs=(q, s))
        if b is not None:  # already float32 in the members
            out.bias = nn.Parameter(b, False)
    else:
        out = Int8Linear(meta, b, qs=(q, s))
    off = 0
    for m in mods:
        n = m.out_features
        m.qweight = out.qweight[off : off + n]
        if isinstance(m, Int8DynamicLinear):
            m._packed = None
        off += n
    return out


def fused_modules(model: nn.Module) -> set[int]:
    """ids of modules whose weight a `RowFusion` reads directly (their forward never runs)."""
    out: set[int] = set()
    for m in model.modules():
        for v in vars(m).values():
            if isinstance(v, RowFusion):
                out.update(id(mod) for mod, _ in v.refs)
    return out


def quantize_linears(model: nn.Module, kind: Quantize, skip: tuple[str, ...] = ()) -> int:
    """Replace every eligible `nn.Linear` of `model` by its int8 version; returns how many.

    Eligible: 2-D weight on the CPU, not read through a `RowFusion`, name not containing
    one of `skip` (e.g. "wkv_b", "lm_head": handled by the caller).
    """
    kind = pick_int8(kind)
    fused = fused_modules(model)
    todo: list[tuple[nn.Module, str, nn.Linear]] = []
    for name, mod in model.named_modules():
        for child_name, child in mod.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if not isinstance(child, nn.Linear) or id(child) in fused:
                continue
            if any(s in full for s in skip) or child.weight.device.type != "cpu":
                continue
            todo.append((mod, child_name, child))
    for parent, child_name, lin in todo:
        setattr(parent, child_name, make_quant_linear(kind, lin.weight, lin.bias))
    return len(todo)


def quant_linear_numel(model: nn.Module) -> int:
    """Weights held as int8 (for parameter counts: they are buffers now)."""
    mods = [m for m in model.modules() if isinstance(m, Int8Linear | Int8DynamicLinear)]
    return sum(int(m.qweight.numel()) for m in mods)
