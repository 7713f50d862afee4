"""A tiny deterministic training run, as a separate process the tests can SIGKILL.

    python train_worker.py OUT_DIR LOG_FILE [--pause SECONDS]

Appends ``{"step": s, "loss": ...}`` per step to LOG_FILE (flushed and fsynced at once, so the
killer sees exactly how far the run got); ``--pause`` sleeps after each step to give the killer
time. Deterministic on the CPU: one thread, ``torch.use_deterministic_algorithms(True)``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from unmask.models import ModelConfig, Transformer
from unmask.training import TrainConfig, train

STEPS = 12


class FileLog:
    def __init__(self, path: str, pause: float) -> None:
        self.path, self.pause = path, pause

    def log_metrics(self, metrics, step: int) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "loss": metrics["loss"]}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        time.sleep(self.pause)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("log")
    ap.add_argument("--pause", type=float, default=0.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    model = Transformer(
        ModelConfig(
            vocab_size=6,
            seq_len=8,
            dim=32,
            depth=2,
            heads=2,
            num_classes=3,
            dropout=0.1,
            cond_dropout=0.2,
        )
    )
    g = torch.Generator().manual_seed(1)
    tokens, labels = (
        torch.randint(0, 6, (40, 8), generator=g),
        torch.randint(0, 3, (40,), generator=g),
    )
    cfg = TrainConfig(
        steps=STEPS,
        batch_size=8,
        lr=1e-2,
        warmup_steps=3,
        lr_schedule="cosine",
        ema_decay=0.9,
        log_every=1,
        ckpt_every=2,
        keep_last=2,
        device="cpu",
        seed=5,
    )
    train(
        model, tokens, labels, cfg, args.out, tracker=FileLog(args.log, args.pause), progress=False
    )


if __name__ == "__main__":
    main()
