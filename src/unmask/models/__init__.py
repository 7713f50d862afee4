"""Denoiser networks: the DiT-style :class:`Transformer`, its config and size presets.

The config and presets load with the package; the networks load on first use
(:func:`unmask.runtime.lazy_exports`), so reading a params file does not depend on model code.
"""

from unmask.models import presets
from unmask.models.config import ModelConfig
from unmask.runtime import lazy_exports

_LAZY = {
    "unmask.models.denoiser": ("ConditionedDenoiser",),
    "unmask.models.transformer": ("Transformer",),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["ModelConfig", "Transformer", "ConditionedDenoiser", "presets"]
