"""transformers model for an exported SWA-MLA checkpoint (shipped in the export folder).

`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` loads this file,
which runs swamla-tui's own model code, copied beside it as `swamla_model*.py`.

`SwamlaForCausalLM` shares its module tree with an inner `SWAMLA` (the same `_modules`,
`_parameters` and `_buffers` dicts), so its state-dict keys are exactly the project's
(`transformer.h.0.attn.q_proj.weight`, ...): the export's `model.safetensors` loads with
no key renaming in any transformers version, and whatever modules a layer kind adds are
loaded, moved and cast by transformers like any others. The forward is the plain full
causal forward from position 0 (the reference path); there is no KV cache, so
`generate()` recomputes the whole sequence per token.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_swamla import SwamlaConfig
from .swamla_dict_config import dataclass_from_dict
from .swamla_model import SWAMLA, ModelConfig

_V5 = int(transformers.__version__.split(".")[0]) >= 5


class SwamlaPreTrainedModel(PreTrainedModel):
    config_class = SwamlaConfig
    base_model_prefix = ""  # no base-model split: keys are the project's own
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        """Weights always come from the checkpoint; only the derived buffers are rebuilt.

        transformers builds the model on the meta device and gives non-persistent buffers
        (the RoPE tables) placeholder memory: `init_buffers` recomputes them.
        """
        core = self.__dict__.get("_core")
        if module is self and core is not None:
            core.init_buffers(core.transformer.wte.weight.device)


class SwamlaForCausalLM(SwamlaPreTrainedModel, GenerationMixin):
    _tied_weights_keys: Any = (
        {"lm_head.weight": "transformer.wte.weight"} if _V5 else ["lm_head.weight"]
    )

    def __init__(self, config: SwamlaConfig) -> None:
        super().__init__(config)
        cfg = dataclass_from_dict(ModelConfig, config.swamla_model)
        core = SWAMLA(cfg, swa_window=config.swa_attention == "window")
        # one module tree, two views: see the module docstring
        self.__dict__["_core"] = core
        self.__dict__["_modules"] = core._modules
        self.__dict__["_parameters"] = core._parameters
        self.__dict__["_buffers"] = core._buffers
        self.__dict__["_non_persistent_buffers_set"] = core._non_persistent_buffers_set
        self.post_init()

    @property
    def core(self) -> SWAMLA:
        return self.__dict__["_core"]  # type: ignore[no-any-return]

    def train(self, mode: bool = True) -> SwamlaForCausalLM:
        super().train(mode)
        self.core.training = mode
        return self

    def get_input_embeddings(self) -> nn.Module:
        wte: nn.Module = self.core.transformer.wte
        return wte

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.core.transformer.wte = value

    def get_output_embeddings(self) -> nn.Module:
        head: nn.Module = self.core.lm_head
        return head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.core.lm_head = value

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Full forward; a left-padded row runs alone from its first real token.

        The model has no padding mask and its positions start at 0, so a right-padded row
        is exact as it is (causal), while a left-padded one must not see its padding.
        """
        self._engram_map(input_ids.device)
        if attention_mask is None or bool(attention_mask.all()):
            full: torch.Tensor = self.core(input_ids)
            return full
        mask = attention_mask.bool()
        starts = mask.int().argmax(dim=1)  # [B] first real token
        lengths = mask.sum(dim=1)  # [B]
        ar = torch.arange(mask.shape[1], device=mask.device)[None, :]  # [1, T]
        contiguous = (mask == ((ar >= starts[:, None]) & (ar < (starts + lengths)[:, None]))).all()
        if not bool(contiguous):
            raise ValueError("attention_mask must mark one contiguous run of tokens per row")
        out: torch.Tensor = self.core(input_ids)  # right-padded and unpadded rows are already exact
        for r in torch.nonzero(starts > 0).flatten().tolist():
            a, b = int(starts[r]), int(starts[r] + lengths[r])
            out[r] = 0
            out[r, a:b] = self.core(input_ids[r : r + 1, a:b])[0]
        return out

    def _engram_map(self, device: torch.device) -> None:
        """Engram's token map (config.json `swamla_engram_map`), set on first use: it is in
        no weight, and the model is built on the meta device."""
        core = self.core
        if core.cfg.engram is None:
            return
        if core.engram_map is None or core.engram_map.device != device:
            emap = getattr(self.config, "swamla_engram_map", None)
            if not isinstance(emap, list):
                raise ValueError("config.json lacks swamla_engram_map (Engram's token map)")
            core.engram_map = torch.tensor(emap, dtype=torch.long, device=device)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        if input_ids is None or inputs_embeds is not None:
            raise ValueError("SWA-MLA takes input_ids (inputs_embeds is not supported)")
        logits = self._logits(input_ids, attention_mask)  # [B, T, V]
        loss = None
        if labels is not None:
            shift = logits[:, :-1].float()  # [B, T-1, V] predicts labels[:, 1:]
            loss = F.cross_entropy(
                shift.reshape(-1, shift.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The whole sequence every step (no cache)."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}
