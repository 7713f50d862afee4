"""Prefect flow ``train``: distributed training of one pipeline experiment on Ray Train.

One deployment per pipeline experiment (flows/prefect.yaml: ``train/default`` = the root
pipeline; ``pipelines/<name>/`` for the others). The work is
:func:`unmask.orchestration.experiment.train_experiment` (TorchTrainer DDP, workers and
resources from flows/ablations.yaml's ``ray`` section, resumable, MLflow run ``train/<name>``).

    prefect deployment run train/default --param num_workers=2 --watch
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from unmask.orchestration.experiment import TrainRequest, train_experiment


@flow(name="train", log_prints=True)
def train(
    experiment: str = "default",
    workdir: str = ".",
    params: str | None = None,
    overrides: list[str] | None = None,
    num_workers: int | None = None,
    use_gpu: bool | None = None,
    cpus_per_worker: float | None = None,
    max_failures: int | None = None,
    settings: str = "flows/ablations.yaml",
) -> dict[str, Any]:
    """Train ``experiment`` with DDP; returns the final checkpoint and the MLflow run id."""
    out = train_experiment(TrainRequest(
        experiment=experiment, workdir=workdir, params=params, overrides=overrides or [],
        num_workers=num_workers, use_gpu=use_gpu, cpus_per_worker=cpus_per_worker,
        max_failures=max_failures, settings=settings,
        tags={"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": flow_run.name
              or ""},
    ))
    get_run_logger().info("trained %s: step %d → %s", experiment, out["step"], out["checkpoint"])
    return out


if __name__ == "__main__":
    train()
