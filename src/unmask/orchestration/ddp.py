"""Distributed data-parallel training: Ray Train's ``TorchTrainer`` around
:func:`unmask.training.train` (and a plain ``torch.multiprocessing`` launcher for tests).

The training loop itself is DDP-aware (:mod:`unmask.training.loop`): under an initialised
process group it splits every global batch across ranks, keys all noise by the global sample
index and lets rank 0 write checkpoints. This module only

- builds the model and loads the token shard on every worker,
- reports each checkpoint to Ray Train (``ray.train.report(..., checkpoint=...)``) so Ray keeps
  it in ``storage_path`` and hands it back after a failure: with ``max_failures`` > 0 a dead
  worker restarts the whole group, every worker copies the latest reported checkpoint into its
  local run folder and the loop resumes from it exactly,
- copies the final checkpoint out of Ray's storage for the caller.

``num_workers`` processes with ``use_gpu`` use nccl (one GPU each), else gloo on CPU. Locally
Ray starts with ``ray.init()``; on a cluster ``RAY_ADDRESS``/``address="auto"`` — same code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from unmask.data.shards import TokenShards
from unmask.models import ModelConfig, Transformer
from unmask.orchestration.env import free_port
from unmask.orchestration.placement import node_tags, require_resources, train_bundles
from unmask.orchestration.runs import RunLogger, client
from unmask.training import TrainConfig, train

__all__ = ["TrainJob", "TrainOutcome", "train_with_ray", "train_spawned", "run_rank"]


class TrainJob(BaseModel):
    """Everything a training worker needs (plain data: it travels to Ray workers).

    Attributes:
        model_cfg / train_cfg: :class:`~unmask.models.ModelConfig` and
            :class:`~unmask.training.TrainConfig` fields.
        tokens_dir: the training token shard (``TokenShards`` folder).
        tokenizer_hash: the tokenizer hash the shard must carry (None: unchecked).
        work_dir: the run folder (``checkpoints/`` below it); local to each node.
        init_seed: ``torch.manual_seed`` before building the model (same init on every rank).
        tracking_uri / run_id / metric_prefix: rank 0 logs the loss curve into this MLflow run.
        history_file: rank 0 appends every logged row as a JSON line here.
        fail_once_at: testing hook — the last rank raises once after reporting the checkpoint of
            this step (a marker file in ``work_dir`` makes it once), to exercise recovery.
    """

    model_config = ConfigDict(extra="forbid")

    model_cfg: dict[str, Any]
    train_cfg: dict[str, Any]
    tokens_dir: str
    tokenizer_hash: str | None = None
    work_dir: str
    init_seed: int = 0
    tracking_uri: str | None = None
    run_id: str | None = None
    metric_prefix: str = "train/"
    history_file: str | None = None
    fail_once_at: int | None = None


@dataclass
class TrainOutcome:
    """Final checkpoint (a local copy), its step, and the wall time of the fit."""

    checkpoint: Path
    step: int
    elapsed_s: float


class _Loggers:
    """Fan ``log_metrics`` out to MLflow and/or a JSON-lines history file."""

    def __init__(self, job: TrainJob) -> None:
        self.sinks: list[Any] = []
        if job.tracking_uri and job.run_id:
            self.sinks.append(RunLogger(job.tracking_uri, job.run_id, job.metric_prefix,
                                        spool_dir=Path(job.work_dir) / "mlflow-spool"))
        self.history = Path(job.history_file) if job.history_file else None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for s in self.sinks:
            s.log_metrics(metrics, step)
        if self.history is not None:
            with open(self.history, "a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _restore_into(ckpt_dir: Path, source: Path) -> None:
    """Copy checkpoint files (``ckpt-*.pt`` + ``.sha256``) from ``source`` that ``ckpt_dir``
    lacks (a fresh node after a failure)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(source.glob("ckpt-*.pt*")):
        if not (ckpt_dir / f.name).exists():
            _copy_atomic(f, ckpt_dir / f.name)


def run_rank(job: TrainJob, rank: int, world: int, report: Any = None) -> Any:
    """Train on this rank (the process group, if any, is already initialised).

    ``report(path_or_None, step, metrics)`` is called on every rank after each checkpoint.
    """
    import torch  # why: torch is slow to import


    work = Path(job.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    shards = TokenShards(job.tokens_dir, tokenizer_hash=job.tokenizer_hash, verify=False)
    mcfg = ModelConfig(**job.model_cfg)
    tokens = shards.tokens_tensor()
    labels = shards.labels_tensor() if mcfg.num_classes > 0 else None
    torch.manual_seed(job.init_seed)
    model = Transformer(mcfg)
    marker = work / ".failed_once"

    def on_checkpoint(path: Path | None, step: int, metrics: dict[str, float]) -> None:
        if report is not None:
            report(path, step, metrics)
        if job.fail_once_at == step and rank == world - 1 and not marker.exists():
            marker.write_text(str(step))
            raise RuntimeError(f"injected failure of worker {rank} after step {step}")

    loggers = _Loggers(job) if rank == 0 else None
    result = train(model, tokens, labels, TrainConfig(**job.train_cfg), work, tracker=loggers,
                   resume=True, progress=rank == 0, on_checkpoint=on_checkpoint)
    for sink in loggers.sinks if loggers is not None else []:
        if not sink.flush():
            warnings.warn(f"{sink.pending} MLflow records of run {sink.run_id} are still in "
                          f"{sink._tracker.spool_file}: send them with `python -m "
                          "unmask.tracking import <file>`", stacklevel=2)
    return result


def _ray_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the TorchTrainer."""
    import ray.train  # why: ray is slow to import; sweeps only

    job = TrainJob(**config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if job.tracking_uri and job.run_id:  # the node of each rank (of the last attempt)

        for k, v in node_tags(f"ray.train.rank{rank}.node").items():
            client(job.tracking_uri).set_tag(job.run_id, k, v)
    import torch  # why: torch is slow to import

    if torch.cuda.is_available():  # use_gpu: the GPU Ray Train assigned to this worker
        from ray.train.torch import get_device  # why: ray is slow to import; sweeps only

        device = get_device()
        torch.cuda.set_device(device)
        os.environ["LOCAL_RANK"] = str(device.index)
    ckpt_dir = Path(job.work_dir) / "checkpoints"
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            _restore_into(ckpt_dir, Path(d))

    def report(path: Path | None, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **metrics}
        if path is None:
            ray.train.report(row)
            return
        with tempfile.TemporaryDirectory(dir=job.work_dir, prefix=".report-") as tmp:
            for f in (path, path.with_name(path.name + ".sha256")):
                os.link(f, Path(tmp) / f.name)
            ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    run_rank(job, rank, world, report)


def train_with_ray(job: TrainJob, *, name: str, storage_path: str | Path, num_workers: int = 1,
                   use_gpu: bool = False, cpus_per_worker: float = 1.0,
                   max_failures: int = 1) -> TrainOutcome:
    """Run ``job`` on Ray Train's ``TorchTrainer`` (DDP over ``num_workers`` workers).

    Ray must be initialised (:func:`unmask.orchestration.env.ray_init`). A run ``name`` that
    already has checkpoints in ``storage_path`` continues from them (Ray Train restores runs by
    name), as does the local run folder. Returns the final checkpoint, copied to
    ``<work_dir>/final/``.

    Raises:
        ray.train.TrainingFailedError: when the workers fail more than ``max_failures`` times.
    """
    from ray.train import (  # why: ray is slow to import; sweeps only
        CheckpointConfig,
        FailureConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchTrainer  # why: ray is slow to import; sweeps only


    # Fail fast instead of waiting forever for workers no node can host (e.g. use_gpu).
    require_resources(train_bundles(num_workers, cpus_per_worker, use_gpu),
                      f"Ray Train run {name!r}")
    resources = {"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config=job.model_dump(),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=str(Path(storage_path).resolve()),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    start = time.perf_counter()
    result = trainer.fit()
    elapsed = time.perf_counter() - start
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name!r} finished without a checkpoint")
    final = Path(job.work_dir) / "final"
    if final.exists():
        shutil.rmtree(final)
    final.mkdir(parents=True)
    with result.checkpoint.as_directory() as d:
        _restore_into(final, Path(d))
    ckpt = sorted(final.glob("ckpt-*.pt"))[-1]
    return TrainOutcome(ckpt, int(ckpt.stem.split("-")[1]), elapsed)


def _spawn_entry(rank: int, world: int, port: int, job: dict[str, Any]) -> None:
    import torch  # why: torch is slow to import
    import torch.distributed as dist  # why: torch is slow to import

    # One process per core share: spinning OpenMP threads of oversubscribed ranks waiting in
    # all-reduce slow a step down by orders of magnitude.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        run_rank(TrainJob(**job), rank, world)
    finally:
        dist.destroy_process_group()


def train_spawned(job: TrainJob, world_size: int) -> None:
    """Run ``job`` on ``world_size`` local gloo processes (``torch.multiprocessing``, no Ray):
    the loop's DDP path without the Ray machinery, for tests and benchmarks."""
    import torch.multiprocessing as mp  # why: torch is slow to import


    mp.start_processes(_spawn_entry, args=(world_size, free_port(), job.model_dump()),
                       nprocs=world_size, join=True, start_method="spawn")
