"""``python -m unmask.stages joint.train``: train ONE model on ``[image tokens | mask tokens]``
(:class:`~unmask.joint.layout.JointLayout`, DI §3.4 eq. 4) → ``models/{model.pt, train.json}``.
Every position of both modalities is masked with the schedule's κ_t, or with each modality's
own κ_m(t) given ``train.schedules: {image: NAME, mask: NAME}`` (:mod:`unmask.joint.schedules`;
sampling still uses the one ``sample.schedule``)."""

from __future__ import annotations

from typing import Any

import torch

from unmask import pretokenized as tp
from unmask.joint.params import TASK_TAG, JointParams, layout_of, model_config
from unmask.joint.schedules import train_schedule
from unmask.models.transformer import Transformer
from unmask.pretokenized_train import train_stage
from unmask.runtime import seed_everything
from unmask.stages import stage

__all__ = ["run_train"]


@stage("joint.train", params=JointParams)
def run_train(p: JointParams) -> dict[str, Any]:
    """Train one model over [image tokens | mask tokens] (DI §3.4, eq. 4)."""
    meta, (image, mask) = tp.load_tokens("train_image", "train_mask")
    layout = layout_of(meta)
    x = layout.combine(torch.from_numpy(image), torch.from_numpy(mask))
    cfg = model_config(p.model, layout)
    seed_everything(p.train.seed)  # the initialisation draws from the global RNG
    model = Transformer(cfg)
    return train_stage(p, model, x, tp.RUNS / "joint", meta, TASK_TAG,
                              schedule=train_schedule(p.train, layout.modalities()),
                              seq_len=layout.seq_len, vocab_size=layout.vocab_size)
