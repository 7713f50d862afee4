"""Prefect flow ``ablations``: one grid over one axis, each point a Ray Tune trial.

Deployments (flows/prefect.yaml): ablations/nfe, temperature, cfg, cfg_interval, sampler, top_p
(sampling-time: reuse the pipeline's checkpoint and tokenizer) and schedule, weighting, t_min
(training-time: one model per point, trained with Ray Train DDP inside its Tune trial; t_min is
eMIGM's time truncation). The work is :class:`unmask.orchestration.ablation.Ablation`; this file
only adds Prefect:

- a missing input (tokenizer, token shards, checkpoint) fails the flow before any trial, with
  the file and the DVC stage that writes it;
- one task per grid point, named by the point (``steps=8``), that mirrors its Tune trial
  (running while the trial runs, FAILED with the trial's error when it fails);
- a table artifact (one row per point: status, primary metric, headline metrics, link to its
  MLflow run) and a markdown summary (counts, wall time, best point, errors) on the flow-run
  page, under the keys ``ablation-<axis>`` and ``ablation-<axis>-summary``;
- a flow that fails when a trial did.

    prefect deployment run ablations/nfe --watch
    prefect deployment run ablations/nfe --param values='[8, 32]' --param n_per_class=2 --watch
"""

from __future__ import annotations

import contextvars
import re
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from unmask.orchestration.ablation import Ablation, AblationRequest
from unmask.orchestration.tune_grid import TrialBoard, TrialOutcome


class TrialFailed(RuntimeError):
    """A grid point's trial failed (after its retries)."""


@task(name="trial", task_run_name="{label}", cache_policy=NO_CACHE, retries=0)
def trial(label: str, index: int, board: TrialBoard) -> dict[str, Any]:
    """Mirror of Tune trial ``index``: waits for it and fails with its error."""
    out = board.wait(index)
    if out.status != "completed":
        raise TrialFailed(f"{label}: {out.error}")
    return {k: v for k, v in out.metrics.items() if isinstance(v, int | float | str)}


@task(name="trial", task_run_name="{label} (done before)", cache_policy=NO_CACHE)
def done_before(label: str, run_id: str) -> dict[str, Any]:
    """A point with a FINISHED MLflow run for the same key: skipped (``force=True`` reruns)."""
    return {"skipped": True, "mlflow_run_id": run_id}


@flow(name="ablations", task_runner=ThreadPoolTaskRunner(max_workers=256), log_prints=True)
def ablations(
    axis: str = "nfe",
    values: list[Any] | None = None,
    grid: dict[str, list[Any]] | None = None,
    workdir: str = ".",
    checkpoint: str | None = None,
    overrides: list[str] | None = None,
    n_per_class: int | None = None,
    metric: str | None = None,
    retries: int | None = None,
    num_workers: int | None = None,
    max_concurrent_trials: int | None = None,
    force: bool = False,
    experiment: str | None = None,
    settings: str = "flows/ablations.yaml",
) -> dict[str, Any]:
    """Run the ``axis`` grid (defaults in flows/ablations.yaml) and write its table."""
    log = get_run_logger()
    request = AblationRequest(
        axis=axis, values=values, grid=grid, workdir=workdir, checkpoint=checkpoint,
        overrides=overrides or [], n_per_class=n_per_class, metric=metric, retries=retries,
        num_workers=num_workers, max_concurrent_trials=max_concurrent_trials, force=force,
        experiment=experiment, settings=settings,
        tags={"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": flow_run.name
              or ""},
    )
    ablation = Ablation(request)
    planned = ablation.plan()
    labels = {pp.point.index: pp.point.label for pp in planned}
    log.info("%s: %d points (%d done before), experiment %r", axis, len(planned),
             sum(pp.skipped for pp in planned), ablation.experiment)

    futures: dict[int, Any] = {
        pp.point.index: done_before.submit(pp.point.label, pp.finished.info.run_id)
        for pp in planned if pp.skipped
    }
    context = contextvars.copy_context()  # Tune calls back from its own loop

    def started(index: int) -> None:
        futures[index] = context.run(trial.submit, labels[index], index, board)

    def ended(out: TrialOutcome) -> None:
        state = "done" if out.status == "completed" else f"FAILED ({out.error})"
        log.info("trial %s: %s", labels[out.index], state)

    board = TrialBoard(on_start=started, on_end=ended)
    summary = ablation.run(board)
    for index in labels:  # points Tune never started still get their (failed) task
        if index not in futures:
            futures[index] = trial.submit(labels[index], index, board)
    for f in futures.values():
        f.wait()
    key = "ablation-" + re.sub(r"[^a-z0-9-]+", "-", axis.lower()).strip("-")
    create_table_artifact(
        summary.table(ablation.uri, ablation.experiment_id), key=key,
        description=f"ablation {axis}: one row per grid point (MLflow experiment "
                    f"{summary.experiment!r}, store {ablation.uri})")
    create_markdown_artifact(summary.markdown(ablation.uri, ablation.experiment_id),
                             key=f"{key}-summary", description=f"ablation {axis}: summary")
    log.info("table: %s (MLflow experiment %r, parent run %s)", summary.csv, summary.experiment,
             summary.parent_run_id)
    if summary.failed:
        failed = ", ".join(f"{labels[i]}: {e}" for i, e in summary.failed.items())
        raise TrialFailed(f"{len(summary.failed)} of {len(planned)} trials failed: {failed}")
    return summary.as_dict()


if __name__ == "__main__":
    ablations()
