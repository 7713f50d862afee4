"""Training of one pipeline experiment (the ``train`` flow's body).

The experiment ``default`` is the root pipeline (``params.yaml``, ``data/tokens``); any other
name is ``pipelines/<name>/`` with its own ``params.yaml`` and ``dvc.yaml``. Two cases:

- params in the default pipeline's schema (:func:`unmask.config.load_params`) with a
  ``data/tokens/train`` shard (written by its ``prepare``/``tokenize`` stages): distributed
  training on Ray Train's ``TorchTrainer`` (:func:`unmask.orchestration.ddp.train_with_ray`), with
  the workers and resources of the settings file's ``ray`` section; the loss curve goes to the
  MLflow run ``train`` of experiment ``train/<name>``; the final checkpoint is copied to
  ``<experiment dir>/runs/flows/train/<key>/model.pt`` (key: hash of model, train params and
  data), and a rerun with the same key resumes / returns the finished checkpoint;
- a pipeline with its own params schema (eMIGM, MDM-Prime, ...): its DVC stages whose names start
  with ``train`` (and whatever they depend on) run as one Ray task
  (``dvc repro <dvc.yaml>:<stage> ...`` from the repo root, one GPU with ``use_gpu``); those
  stages log their own MLflow runs, this one records the command, exit status and log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from unmask.config import load_params
from unmask.data.shards import TokenShards
from unmask.errors import ConfigError
from unmask.orchestration.ablation import dotted_overrides
from unmask.orchestration.ddp import TrainJob, train_with_ray
from unmask.orchestration.env import ray_init
from unmask.orchestration.grid import grid_key
from unmask.orchestration.settings import load_settings
from unmask.paths import project_root, require, resolve, resolve_params
from unmask.runtime import code_fingerprint
from unmask.tokenizers import build_tokenizer
from unmask.tracking import Tracker, tracking_uri

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


def _run_stages(argv: list[str], cwd: str, log: str) -> int:
    """Body of the Ray task of :func:`_train_with_stages`: run ``argv`` with this environment's
    ``bin`` first on PATH (stage commands say ``python -m ...``), output to ``log``."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    with open(log, "ab") as out:
        return subprocess.run(argv, cwd=cwd, env=env, stdout=out,
                              stderr=subprocess.STDOUT).returncode


def _train_with_stages(req: TrainRequest, exp_dir: Path, rs: Any, reason: str) -> dict[str, Any]:
    import ray  # slow to import: only when a flow trains

    if req.overrides:
        raise ValueError(f"experiment {req.experiment!r} is trained by its own DVC stages "
                         f"({reason}): edit {exp_dir / 'params.yaml'} instead of overrides")
    dvcfile = exp_dir / "dvc.yaml"
    if not dvcfile.is_file():
        raise FileNotFoundError(f"{dvcfile} not found ({reason})")
    stages = [n for n in (yaml.safe_load(dvcfile.read_text()) or {}).get("stages", {})
              if n.startswith("train")]
    if not stages:
        raise ValueError(f"{dvcfile} has no stage named train*")
    dvc = Path(sys.executable).parent / "dvc"
    # run in the pipeline's folder: pipelines/<exp> is its own DVC project (dvc init --subdir)
    argv = [str(dvc if dvc.exists() else "dvc"), "repro", *[f"dvc.yaml:{n}" for n in stages]]
    log = exp_dir / "runs/flows/train/dvc-repro.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(tracking_uri(root=exp_dir / "mlruns"))
    tags = {**req.tags, "unmask.kind": "train", "unmask.experiment": req.experiment,
            "unmask.launcher": "dvc-stages"}
    with tracker.start_run(f"train/{req.experiment}", "train",
                           params={"command": " ".join(argv), "stages": stages,
                                   "use_gpu": rs.use_gpu}, tags=tags):
        ours = not ray.is_initialized()
        ray_init(rs.address, num_cpus=rs.num_cpus, num_gpus=rs.num_gpus)
        try:
            task = ray.remote(num_cpus=rs.cpus_per_worker, num_gpus=1 if rs.use_gpu else 0)(
                _run_stages)
            rc = ray.get(task.remote(argv, str(exp_dir), str(log)))
        finally:
            if ours:
                ray.shutdown()
        tracker.log_artifact(log)
        tracker.log_metrics({"exit_status": rc}, step=0)
        if rc != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{' '.join(argv)} failed (exit {rc}); log {log}:\n{tail}")
        run_id = tracker.run_id
    return {"experiment": req.experiment, "stages": stages, "log": str(log),
            "mlflow_run_id": run_id}


def train_experiment(req: TrainRequest) -> dict[str, Any]:
    """Train the experiment's model (see the module docstring); returns what it produced
    (checkpoint, step, MLflow run id, ...)."""
    import ray  # slow to import: only when a flow trains

    exp_dir = experiment_dir(req.workdir, req.experiment)
    rs = load_settings(resolve(req.settings, Path(req.workdir).resolve())).ray
    upd = {k: v for k, v in {"num_workers": req.num_workers, "use_gpu": req.use_gpu,
                             "cpus_per_worker": req.cpus_per_worker,
                             "max_failures": req.max_failures}.items() if v is not None}
    rs = rs.model_copy(update=upd)
    params_path = Path(req.params) if req.params else exp_dir / "params.yaml"
    if not params_path.is_absolute():
        params_path = exp_dir / params_path
    try:
        load_params(params_path)
    except ConfigError as e:
        if req.experiment == "default" or req.params:
            raise
        return _train_with_stages(req, exp_dir, rs, f"not the default params schema: {e}")
    params = load_params(params_path, dotted_overrides(req.overrides))
    root = project_root(params_path)  # the params' paths are relative to it, not to the cwd
    tokens = exp_dir / "data/tokens/train"
    need = [(tokens / "manifest.json", "the training token shard")]
    if params.tokenizer.kind == "vq":
        need.insert(0, (resolve(params.tokenizer.path, root), "the trained VQ tokenizer"))
    require(need, root)
    tok = build_tokenizer(resolve_params(params, root).tokenizer)
    shard = TokenShards(tokens, tokenizer_hash=tok.hash, verify=False)
    # the code is part of the key: a run of other code is never resumed (issue 17)
    key = grid_key({"model": params.model.model_dump(mode="json"),
                    "train": params.train.model_dump(mode="json"), "data": shard.hash,
                    "code": code_fingerprint("unmask.orchestration.ddp")})
    run_dir = exp_dir / "runs/flows/train" / key

    tracker = Tracker(tracking_uri(root=resolve(params.tracking.root, root)))
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
