"""Training: the loop, its config, checkpoints and weight EMA.

Only :class:`TrainConfig` loads with the package; the loop, checkpoints and EMA load on first
use (:func:`unmask.runtime.lazy_exports`), so a params reader that needs the schema — e.g. the
``prepare`` stage — neither runs the training code nor lists it among its DVC deps.
"""

from unmask.runtime import lazy_exports
from unmask.training.config import TrainConfig

_LAZY = {
    "unmask.training.checkpoint": (
        "CorruptCheckpointError", "LoadedCheckpoint", "ModelConfigMismatchError",
        "latest_checkpoint", "list_checkpoints", "load_checkpoint", "read_checkpoint",
        "save_checkpoint",
    ),
    "unmask.training.ema": ("EMA",),
    "unmask.training.loop": ("BatchOrder", "NonFiniteLossError", "TrainResult", "lr_factor",
                             "train"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["TrainConfig", *(name for names in _LAZY.values() for name in names)]
