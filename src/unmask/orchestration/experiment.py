"""Distributed training of one pipeline experiment (the ``train`` flow's body).

The experiment ``default`` is the root pipeline (``params.yaml``, ``data/tokens``); any other
name is ``pipelines/<name>/`` with its own ``params.yaml`` and, once its ``prepare``/``tokenize``
stages ran, its ``data/tokens/train`` shard. Training runs on Ray Train's ``TorchTrainer``
(:func:`unmask.orchestration.ddp.train_with_ray`) with the workers and resources of the
settings file's ``ray`` section; the loss curve goes to the MLflow run ``train`` of experiment
``train/<name>``; the final checkpoint is copied to
``<experiment dir>/runs/flows/train/<key>/model.pt`` (key: hash of model, train params and data),
and a rerun with the same key resumes / returns the finished checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from unmask.orchestration.ablation import dotted_overrides
from unmask.orchestration.grid import grid_key
from unmask.orchestration.settings import load_settings

__all__ = ["TrainRequest", "experiment_dir", "train_experiment"]


class TrainRequest(BaseModel):
    """Parameters of the ``train`` flow (see :func:`train_experiment`)."""

    model_config = ConfigDict(extra="forbid")

    experiment: str = "default"
    workdir: str = "."
    params: str | None = None
    overrides: list[str] | dict[str, Any] = Field(default_factory=list)
    settings: str = "flows/ablations.yaml"
    num_workers: int | None = None
    use_gpu: bool | None = None
    cpus_per_worker: float | None = None
    max_failures: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)


def experiment_dir(workdir: str | Path, experiment: str) -> Path:
    """``workdir`` for ``default``, else ``workdir/pipelines/<experiment>`` (must exist)."""
    workdir = Path(workdir).resolve()
    if experiment == "default":
        return workdir
    d = workdir / "pipelines" / experiment
    if not d.is_dir():
        known = sorted(p.name for p in (workdir / "pipelines").glob("*") if p.is_dir())
        raise FileNotFoundError(f"no pipeline experiment {experiment!r} ({d} missing); "
                                f"known: {', '.join(['default', *known])}")
    return d


def train_experiment(req: TrainRequest) -> dict[str, Any]:
    """Train the experiment's model with DDP on Ray Train; returns checkpoint, run id, step."""
    import ray

    from unmask.config import load_params
    from unmask.data.shards import TokenShards
    from unmask.orchestration.ddp import TrainJob, train_with_ray
    from unmask.orchestration.env import ray_init
    from unmask.tracking import Tracker, tracking_uri

    exp_dir = experiment_dir(req.workdir, req.experiment)
    settings_path = Path(req.settings)
    if not settings_path.is_absolute() and not settings_path.is_file():
        settings_path = Path(req.workdir).resolve() / req.settings
    rs = load_settings(settings_path).ray
    upd = {k: v for k, v in {"num_workers": req.num_workers, "use_gpu": req.use_gpu,
                             "cpus_per_worker": req.cpus_per_worker,
                             "max_failures": req.max_failures}.items() if v is not None}
    rs = rs.model_copy(update=upd)
    params_path = Path(req.params) if req.params else exp_dir / "params.yaml"
    if not params_path.is_absolute():
        params_path = exp_dir / params_path
    params = load_params(params_path, dotted_overrides(req.overrides))
    tok = params.tokenizer.build()
    shard = TokenShards(exp_dir / "data/tokens/train", tokenizer_hash=tok.hash, verify=False)
    key = grid_key({"model": params.model.model_dump(mode="json"),
                    "train": params.train.model_dump(mode="json"), "data": shard.hash})
    run_dir = exp_dir / "runs/flows/train" / key

    tracker = Tracker(tracking_uri(root=exp_dir / "mlruns"))
    tags = {**req.tags, "unmask.kind": "train", "unmask.experiment": req.experiment,
            "unmask.run_key": key}
    ray_params = rs.model_dump()
    with tracker.start_run(f"train/{req.experiment}", "train",
                           params={**params.flat(), "ray": ray_params}, tags=tags):
        job = TrainJob(model_cfg=params.model.model_dump(mode="json"),
                       train_cfg=params.train.model_dump(mode="json"),
                       tokens_dir=str(shard.path), tokenizer_hash=tok.hash,
                       work_dir=str(run_dir / "work"), init_seed=params.train.seed,
                       tracking_uri=tracker.uri, run_id=tracker.run_id)
        ours = not ray.is_initialized()
        ray_init(rs.address, num_cpus=rs.num_cpus, num_gpus=rs.num_gpus)
        try:
            out = train_with_ray(job, name=f"train-{req.experiment}-{key}",
                                 storage_path=exp_dir / "runs/ray", num_workers=rs.num_workers,
                                 use_gpu=rs.use_gpu, cpus_per_worker=rs.cpus_per_worker,
                                 max_failures=rs.max_failures)
        finally:
            if ours:
                ray.shutdown()
        final = run_dir / "model.pt"
        shutil.copyfile(out.checkpoint, final)
        shutil.copyfile(f"{out.checkpoint}.sha256", f"{final}.sha256")
        tracker.log_metrics({"train_seconds": out.elapsed_s, "train_steps": out.step},
                            step=out.step)
        tracker.set_tags({"unmask.checkpoint": str(final)})
        run_id = tracker.run_id
    return {"experiment": req.experiment, "checkpoint": str(final), "step": out.step,
            "mlflow_run_id": run_id, "seconds": round(out.elapsed_s, 2)}
