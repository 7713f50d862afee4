"""Training: the loop, its config, checkpoints and weight EMA."""

from unmask.training.checkpoint import (
    CorruptCheckpointError,
    LoadedCheckpoint,
    ModelConfigMismatchError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from unmask.training.config import TrainConfig
from unmask.training.ema import EMA
from unmask.training.loop import BatchOrder, NonFiniteLossError, TrainResult, lr_factor, train

__all__ = [
    "TrainConfig",
    "train",
    "TrainResult",
    "NonFiniteLossError",
    "lr_factor",
    "BatchOrder",
    "EMA",
    "CorruptCheckpointError",
    "ModelConfigMismatchError",
    "LoadedCheckpoint",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
]
