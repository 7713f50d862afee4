"""Denoiser networks: the DiT-style :class:`Transformer`, its config and size presets."""

from unmask.models import presets
from unmask.models.config import ModelConfig
from unmask.models.denoiser import ConditionedDenoiser
from unmask.models.transformer import Transformer

__all__ = ["ModelConfig", "Transformer", "ConditionedDenoiser", "presets", "build_model"]


def build_model(cfg: ModelConfig | dict) -> Transformer:
    """Instantiate the network described by ``cfg``."""
    return Transformer(cfg)
