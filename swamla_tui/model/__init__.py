"""The SWA-MLA model: config inference and a faithful forward pass."""

from .config import ModelConfig
from .infer import infer_config
from .transformer import SWAMLA

__all__ = ["ModelConfig", "infer_config", "SWAMLA"]
