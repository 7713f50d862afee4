"""A run killed at a checkpoint that falls between two log steps (ckpt_every not a multiple of
log_every) logs, after resuming, the same window means as the uninterrupted run — the
checkpoint carries the partial window — so the stage's loss-curve file is the same bytes."""

from __future__ import annotations

import torch

from unmask.models import ModelConfig, Transformer
from unmask.training import TrainConfig, train


class _Rows:
    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}

    def log_metrics(self, metrics, step: int) -> None:
        self.rows[step] = {k: v for k, v in metrics.items() if k != "tokens_per_s"}


def _model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=7, seq_len=8, dim=16, depth=1, heads=2,
                                   num_classes=3, dropout=0.1, cond_dropout=0.2))


def test_resume_between_log_steps_logs_the_same_window_means(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 7, (40, 8), generator=g), torch.randint(0, 3, (40,), generator=g)
    cfg = TrainConfig(steps=12, batch_size=8, lr=1e-2, warmup_steps=2, log_every=4,
                      ckpt_every=6, keep_last=5, device="cpu", seed=3)
    straight = _Rows()
    train(_model(), *data, cfg, tmp_path / "a", tracker=straight, progress=False)
    assert sorted(straight.rows) == [4, 8, 12]

    # the same run killed right after its step-6 checkpoint: only that checkpoint survives
    run = tmp_path / "b"
    train(_model(), *data, cfg, run, tracker=_Rows(), progress=False)
    for p in (run / "checkpoints").glob("ckpt-00000012.pt*"):
        p.unlink()
    resumed = _Rows()
    train(_model(), *data, cfg, run, tracker=resumed, progress=False)
    assert sorted(resumed.rows) == [8, 12]
    for step in (8, 12):  # step 8 averages steps 5..8: two before the kill, two after
        assert resumed.rows[step] == straight.rows[step], step
