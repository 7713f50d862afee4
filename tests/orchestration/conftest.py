"""Fixtures for the orchestration tests: a tiny token shard and job factory, isolated service
homes (PREFECT_HOME, MLflow stores in tmp dirs), telemetry off."""

from __future__ import annotations

import os

import pytest
import torch

from unmask.data.shards import ShardWriter
from unmask.orchestration.ddp import TrainJob

for _k, _v in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
               "DVC_NO_ANALYTICS": "1", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(_k, _v)


def write_shard(path, n=48, shape=(2, 4), vocab=5, classes=3, seed=0):
    """A labelled token shard with a learnable pattern (row r of a sample = its class + r)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    base = (labels[:, None, None] + torch.arange(shape[0])[None, :, None]) % vocab
    noise = torch.randint(0, vocab, (n, *shape), generator=g)
    keep = torch.rand((n, *shape), generator=g) < 0.8
    tokens = torch.where(keep, base.expand(n, *shape), noise)
    with ShardWriter(path, count=n, shape=shape, vocab_size=vocab, labels=True,
                     tokenizer={"identity": "test", "hash": "test"}) as w:
        w.write(tokens.numpy(), labels.numpy())
    return path


@pytest.fixture
def shard(tmp_path):
    return write_shard(tmp_path / "shard")


@pytest.fixture
def make_job(shard, tmp_path):
    """TrainJob factory for a tiny class-conditional model on the shard."""

    def make(name: str, **train) -> TrainJob:
        model = dict(vocab_size=5, grid=(2, 4), pos="learned2d", num_classes=3, dim=32, depth=2,
                     heads=2, dropout=0.0, cond_dropout=0.2)
        cfg = dict(steps=8, batch_size=8, lr=1e-2, warmup_steps=2, lr_schedule="cosine",
                   ema_decay=0.9, log_every=1, ckpt_every=4, keep_last=2, device="cpu", seed=3)
        cfg.update(train)
        work = tmp_path / name
        work.mkdir()
        return TrainJob(model_cfg=model, train_cfg=cfg, tokens_dir=str(shard), work_dir=str(work),
                        history_file=str(work / "history.jsonl"))

    return make
