"""One grid point = one Ray Tune trial = one nested MLflow run.

:func:`run_trial` is what the trial does, in whatever process Ray puts it:

1. open (or, on a Tune retry, reopen) the trial's MLflow run under the sweep's parent run;
2. resolve the params (``params.yaml`` + the flow's overrides + the point) — an invalid value
   fails this trial only — and make their paths absolute against the project root the driver
   passed (:func:`unmask.paths.resolve_params`): Tune runs a trial in its own folder, so a
   relative ``tokenizer.path`` must never be read against the worker's cwd;
3. training-time axes: train a model on Ray Train (:func:`unmask.orchestration.ddp.
   train_with_ray`, DDP with the configured workers, loss curve into the run); sampling-time
   axes: use the sweep's one checkpoint;
4. sample and score it (:func:`unmask.orchestration.evaluation.evaluate_checkpoint`), log the
   metrics, the settings and the sample grid PNG, and ``compute_seconds``: the wall time of
   training + sampling + scoring, i.e. the trial's own work without the orchestration around it
   (``benchmarks/orchestration_overhead.py`` compares a sweep's wall time with their sum).

:func:`tune_trainable` wraps it for Ray Tune (``tune.report`` of the final metrics).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from unmask.config import load_params
from unmask.orchestration.ddp import TrainJob, train_with_ray
from unmask.orchestration.evaluation import evaluate_checkpoint
from unmask.orchestration.placement import node_tags
from unmask.orchestration.runs import TrialRun
from unmask.orchestration.settings import EvalSettings, RaySettings
from unmask.paths import project_root, resolve_params
from unmask.runtime import git_commit
from unmask.tokenizers import build_tokenizer

__all__ = ["TrialSpec", "run_trial", "tune_trainable", "RELEVANT_SECTIONS"]

#: Params sections that determine a trial's result (and go into its key and MLflow params).
RELEVANT_SECTIONS = ("data", "tokenizer", "model", "train", "sample", "evaluate")


class TrialSpec(BaseModel):
    """Everything a trial needs; plain data (it travels to Ray workers)."""

    model_config = ConfigDict(extra="forbid")

    index: int
    label: str
    axis: str
    kind: Literal["sampling", "training"]
    key: str
    point: dict[str, Any]
    overrides: dict[str, Any]
    params_path: str
    #: the project root the params' relative paths resolve against ("": the params' folder)
    root: str = ""
    checkpoint: str | None
    tokens_dir: str
    trial_dir: str
    ray_storage: str
    eval: EvalSettings
    ray: RaySettings
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    tags: dict[str, str] = Field(default_factory=dict)


def _train(spec: TrialSpec, params: Any, run: Any) -> Path:
    tok = build_tokenizer(params.tokenizer)
    job = TrainJob(
        model_cfg=params.model.model_dump(mode="json"),
        train_cfg=params.train.model_dump(mode="json"),
        tokens_dir=str(Path(spec.tokens_dir) / "train"),
        tokenizer_hash=tok.hash,
        work_dir=str(Path(spec.trial_dir) / "train"),
        init_seed=params.train.seed,
        tracking_uri=spec.tracking_uri,
        run_id=run.run_id,
    )
    r = spec.ray
    out = train_with_ray(job, name=f"{spec.axis}-{spec.key}", storage_path=spec.ray_storage,
                         num_workers=r.num_workers, use_gpu=r.use_gpu,
                         cpus_per_worker=r.cpus_per_worker, max_failures=r.max_failures)
    run.log_metrics({"train_seconds": out.elapsed_s, "train_steps": out.step}, step=out.step)
    return out.checkpoint


def _run_metadata() -> dict[str, str]:
    """Tags the report's run-metadata table reads: the commit and the device of the trial."""

    import torch  # why: torch is slow to import


    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"cpu ({platform.processor() or platform.machine()})")
    return {"git_commit": git_commit(), "unmask.device": device}


def run_trial(spec: TrialSpec, extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one grid point (see the module docstring). Returns its metrics plus
    ``primary_metric`` / ``primary`` and ``mlflow_run_id``. Raises on failure (the MLflow run
    is then FAILED with the error)."""

    tags = {**spec.tags, "unmask.grid_index": str(spec.index), "unmask.point": spec.label,
            "unmask.ablation": spec.axis, "unmask.axis_kind": spec.kind, **_run_metadata(),
            **(extra_tags or {})}
    with TrialRun(spec.tracking_uri, spec.experiment_id, spec.parent_run_id, spec.key,
                  spec.label, tags) as run:
        run.log_params({f"point.{k}": v for k, v in spec.point.items()})
        params = load_params(spec.params_path, spec.overrides)
        flat = params.flat()  # logged as written (relative paths compare across clones)
        run.log_params({s: flat[s] for s in RELEVANT_SECTIONS if s in flat})
        params = resolve_params(params, spec.root or project_root(spec.params_path))
        run.log_params({"eval": spec.eval.model_dump(), "checkpoint": spec.checkpoint or "trained"})
        start = time.perf_counter()
        if spec.kind == "training":
            checkpoint = _train(spec, params, run)
        else:
            if spec.checkpoint is None:
                raise ValueError("a sampling-time trial needs a checkpoint")
            checkpoint = Path(spec.checkpoint)
        ev = evaluate_checkpoint(checkpoint, params, spec.eval, Path(spec.trial_dir) / "eval",
                                 spec.tokens_dir, nelbo=spec.kind == "training")
        ev.metrics["compute_seconds"] = time.perf_counter() - start
        run.log_params(ev.params)
        run.log_metrics(ev.metrics)
        run.set_tags({"unmask.primary_metric": ev.primary})
        for f in ev.artifacts:
            run.log_artifact(f, "samples" if f.suffix == ".png" else None)
        (Path(spec.trial_dir) / "result.json").write_text(json.dumps(
            {"run_id": run.run_id, "metrics": ev.metrics, "primary": ev.primary}, indent=2))
        return {**ev.metrics, "primary_metric": ev.primary, "primary": ev.metrics[ev.primary],
                "mlflow_run_id": run.run_id}


def tune_trainable(config: dict[str, Any], specs: list[dict[str, Any]]) -> None:
    """Ray Tune function trainable: ``config["index"]`` picks the spec; reports the metrics."""
    from ray import tune  # why: ray is slow to import; sweeps only

    spec = TrialSpec(**specs[config["index"]])

    ctx = tune.get_context()
    out = run_trial(spec, {"ray.trial_id": ctx.get_trial_id() or "", **node_tags()})
    tune.report({k: v for k, v in out.items() if isinstance(v, int | float | str)})
