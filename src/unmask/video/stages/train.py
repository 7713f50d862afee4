"""``python -m unmask.stages video.train``: train the video transformer (``model.attention``
``full`` or ``factorized``, space + time positions; DI §4.2.1, Table 5) on the clips' tokens →
``models/{model.pt, train.json}``."""

from __future__ import annotations

from typing import Any

import torch

from unmask import pretokenized as tp
from unmask.models.transformer import Transformer
from unmask.pretokenized_train import train_stage
from unmask.runtime import seed_everything
from unmask.stages import stage
from unmask.video.params import TASK_TAG, VideoParams, model_config

__all__ = ["run_train"]


@stage("video.train", params=VideoParams)
def run_train(p: VideoParams) -> dict[str, Any]:
    """Train the video transformer on the clips' tokens (DI §4.2.1, Table 5)."""
    meta, (train_tokens,) = tp.load_tokens("train")
    x = torch.from_numpy(train_tokens).long()
    cfg = model_config(p.model, meta)
    seed_everything(p.train.seed)  # the initialisation draws from the global RNG
    model = Transformer(cfg)
    return train_stage(p, model, x, tp.RUNS / "video", meta, TASK_TAG,
                              seq_len=cfg.length, attention=cfg.attention)
