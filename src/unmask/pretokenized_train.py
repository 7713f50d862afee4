"""The body of the ``train`` stage over pre-extracted tokens (``joint.train``, ``video.train``):
:func:`train_stage` (the masked-CE loop of :func:`unmask.training.train`, logged as an MLflow run,
weights to ``models/model.pt``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unmask.models.transformer import Transformer
from unmask.pretokenized import MODELS, TIMINGS, save_model, start_run, write_json
from unmask.runtime import write_timings
from unmask.training import train

__all__ = ["train_stage"]


def train_stage(p: Any, model: Transformer, x: torch.Tensor, run_dir: Path,
                meta: dict[str, Any], task_tag: dict[str, str], *, schedule: Any = None,
                **summary: Any) -> dict[str, Any]:
    """Train ``model`` on the token sequences ``x`` with ``p.train`` (the masked-CE loop of
    :func:`unmask.training.train`), logged as the ``train`` MLflow run; save the (EMA)
    weights with ``meta`` to ``MODELS/model.pt`` and the run summary (plus the ``summary``
    keywords) to ``MODELS/train.json``; returns the summary. ``schedule`` overrides
    ``p.train.schedule`` in the loop (per-modality schedules, :mod:`unmask.joint.schedules`)."""
    with start_run(p, "train", task_tag) as tracker:
        res = train(model, x, None, p.train, run_dir, tracker=tracker, resume=False,
                    schedule=schedule)
        tracker.log_metrics({"final_loss": res.loss or float("nan"),
                             "num_params": model.num_params(),
                             "train_seconds": res.elapsed_s}, step=res.step)
    weights = res.ema.shadow if res.ema is not None else None
    save_model(model, weights, MODELS / "model.pt", {"meta": meta, "step": res.step})
    out = {"step": res.step, "loss": res.loss, "num_params": model.num_params(), **summary}
    write_json(MODELS / "train.json", out)
    write_timings(TIMINGS / "train.json", {"elapsed_s": round(res.elapsed_s, 1),
                                           "tokens_per_s": round(res.tokens_per_s, 1)})
    print(f"train: {res.step} steps, loss {res.loss:.4f}, {res.elapsed_s:.0f}s → {MODELS}")
    return out
