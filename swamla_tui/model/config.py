"""`ModelConfig`: every dimension of an SWA-MLA model, inferred from its weights.

The training argument dict never holds n_head / n_layer / n_embd / vocab_size, and custom
runs differ from their presets, so shapes are read from the tensors (formats v1 §2, formats v2 §4)
and the argument dict only fills what the weights cannot tell (window, sinks, tokenizer,
the MoE top-k). The inference itself lives in `infer.py`, generation detection (the two semantic
switches invisible in the weights) in `detect.py`; this module imports neither.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

LayerKind = Literal["swa", "mla", "deltanet"]
NormKind = Literal["rms", "dyt"]
Generation = Literal["G1", "G2", "G3", "G4", "G5", "G6", "G7"]
ExpertLayout = Literal["new", "old"]
GENERATIONS: tuple[Generation, ...] = get_args(Generation)

PRESETS: dict[str, tuple[int, int, int]] = {  # size -> (n_layer, n_embd, n_head)
    "small": (12, 1024, 16),
    "base": (24, 1536, 16),
    "large": (28, 2048, 16),
    "xl": (32, 4096, 32),
    "moe-1b": (12, 1024, 12),
    "moe-2b": (18, 1024, 16),
}

# Bounds on what the config dict (not a tensor shape) may claim: a checkpoint is untrusted.
MAX_BLOCK_SIZE = 1 << 17
MAX_LAYERS = 512


@dataclass
class DeltaNetConfig:
    """GatedDeltaNet local layers (formats v2 §5). P = n_head * head_dim may be smaller than C."""

    n_head: int
    head_dim: int  # d = C // n_head (floor)
    latent_dim: int = 0  # R: 0 = direct q/k/v/o projections, > 0 = down/up pairs
    share_qk: bool = False  # one projection feeds both q and k
    conv_kernel: int = 4  # K of the short causal convolutions
    wedlm: bool = False  # weights under attn.deltanet.* with the position wrapper (formats v2 §8)
    wedlm_pos_rows: int = 0  # rows of attn.position_embeddings.weight
    wedlm_gate_out: int = 0  # rows of attn.position_gate.0.weight
    fused_keys: bool = False  # stored as G7's g_beta_proj / qkv_conv (split on loading)

    @property
    def proj_dim(self) -> int:
        return self.n_head * self.head_dim


@dataclass
class MoEConfig:
    """MoE / latent MoE feed-forward of the MLA blocks (formats v2 §6)."""

    latent: bool
    n_experts: int  # E, routed
    top_k: int  # from the argument dict: never stored in the weights
    n_shared: int
    shared_dim: int  # Fs
    expert_dim: int  # F, routed
    width: int  # D: the routed experts' model width (C standard, L latent)
    expert_layout: ExpertLayout = "new"  # as stored; memory always holds the new layout
    expert_bias: bool = False  # gate_up_bias / down_bias present


@dataclass
class EngramConfig:
    """Engram n-gram memory before the MLA attention of some layers (formats v2 §7)."""

    layers: list[int]
    orders: list[int]  # n-gram orders in state-dict (= config) order
    n_hash_heads: int  # K_h
    table_sizes: list[int]  # one per (order, head), order-major: the concat order
    slot: int  # columns of each table
    conv_kernel: int  # Kc
    n_seed_rows: int  # rows of embeddings.hash_seeds
    bias: bool = False  # gating linears carry biases
    gate_bias: bool = False  # G7: per-dimension gate σ(q̂ ⊙ k̂ + gate_bias) (else v2's scalar)

    @property
    def d_mem(self) -> int:
        return self.slot * len(self.table_sizes)

    @property
    def dilation(self) -> int:
        return max(self.orders)

    @property
    def history(self) -> int:
        """Canonical ids a cached decoder keeps per row (the longest n-gram minus one)."""
        return max(self.orders) - 1


@dataclass
class FoPEConfig:
    """G7's Fourier position encoding of MLA's q_pe / k_pe (formats G7 §6), sizes from shapes."""

    n_floor: int  # Nf: the first (highest-frequency) pairs, not rotated
    n_active: int  # Na = rows of sin_coef
    n_harmonics: int  # Nh = columns of sin_coef (column 0 is never used)
    theta: float = 10000.0  # FoPE reads rope_theta; the plain MLA RoPE ignores it


@dataclass
class ModelConfig:
    n_layer: int
    n_embd: int
    n_head: int  # attention heads of SWA/MLA layers (DeltaNet has its own in `deltanet`)
    n_kv_head: int
    vocab_size: int
    block_size: int
    layer_kinds: list[LayerKind]
    swa_window: int = 256
    swa_sink_size: int = 4
    q_lora_rank: int = 0
    kv_lora_rank: int = 256  # the first MLA layer's rank
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    norm: NormKind = "rms"  # SWA/MLA norms and ln_f; DeltaNet blocks are always RMSNorm
    bias: bool = False
    mlp_hidden: int = 0  # 4 * n_embd in every known checkpoint; read from the weights
    tokenizer_name: str = "openai-community/gpt2"
    extra: dict[str, Any] = field(default_factory=dict)
    # --- v2 (defaults are what a v1 checkpoint is) --------------------------------------
    generation: Generation = "G1"
    kv_ranks: list[int] = field(default_factory=list)  # per layer (0: not MLA); [] = uniform
    swa_flash: bool = False  # G3 flash SWA: the per-layer window is applied, no sinks
    deltanet: DeltaNetConfig | None = None
    moe: MoEConfig | None = None
    engram: EngramConfig | None = None
    # --- G7 (formats G7 §3-§11; defaults are what a G1-G6 checkpoint is) --------------------
    residual_scalars: bool = False  # x = resid_lambdas[i]·x + x0_lambdas[i]·x0 before block i
    ve_rows: list[int] = field(default_factory=list)  # per layer: value-embedding rows, 0 = none
    ve_gate_dim: int = 32  # G: columns of attn.ve_gate.weight
    fope: FoPEConfig | None = None
    attn_factor: float = 1.0  # YaRN's softmax factor on MLA's scale (nothing else of YaRN)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_swa(self) -> int:
        return self.layer_kinds.count("swa")

    @property
    def n_mla(self) -> int:
        return self.layer_kinds.count("mla")

    @property
    def n_deltanet(self) -> int:
        return self.layer_kinds.count("deltanet")

    @property
    def q_pe_by_position(self) -> bool:
        """G5+ rotate MLA's q_pe at the token position; G1-G4 by head index (formats v2 §3.3)."""
        return self.generation in ("G5", "G6", "G7")

    @property
    def silu_first(self) -> bool:
        """G6's dense MLP applies SiLU to the first half of gate_up; G1-G5 the second (formats v2 §3.1)."""
        return self.generation in ("G6", "G7")

    def ve_layer(self, layer: int) -> int:
        """Rows of the layer's value-embedding table (0: the layer has none)."""
        return self.ve_rows[layer] if layer < len(self.ve_rows) else 0

    def kv_rank(self, layer: int) -> int:
        return self.kv_ranks[layer] if self.kv_ranks else self.kv_lora_rank

    def swa_layer_window(self, layer: int) -> int:
        """The G2+ per-layer window scaling (formats v2 §3.2); applied only by flash SWA layers."""
        if self.n_layer <= 1:
            return max(1, self.swa_window)
        return max(1, int(self.swa_window * (0.5 + 1.5 * layer / (self.n_layer - 1))))

    def kinds_text(self) -> str:
        """'4 DeltaNet + 2 MLA': the layer counts in the order the kinds first appear."""
        names = {"swa": "SWA", "mla": "MLA", "deltanet": "DeltaNet"}
        seen = list(dict.fromkeys(self.layer_kinds))
        return " + ".join(f"{self.layer_kinds.count(k)} {names[k]}" for k in seen)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
