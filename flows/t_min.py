"""Prefect flow behind the deployment ``ablations/t_min``: eMIGM's t_min truncation for the MAE.

One task per grid point: train the eMIGM MAE of a pipeline folder (default
``pipelines/emigm-default``, after its ``dvc repro``) at eMIGM's t_min, sample it, FID against
the pipeline's reference, and log the point as an MLflow run nested under the sweep's run
(experiment ``ablations/t_min``; tags/params/metrics from :mod:`unmask.tracking_tags`:
``unmask.ablation = t_min``, ``train.t_min``, ``fid`` or ``unmask.fid_unavailable``,
``train_seconds``). The work is :mod:`unmask.emigm.t_min`. The flow (and its function) is
named ``ablations``, so the deployment's full name is ``ablations/t_min``; the grid's default
values are the ``t_min`` axis of flows/ablations.yaml (``emigm.t_min``); the table goes to
``<output>/t_min.csv``.

    prefect deployment run ablations/t_min --watch
    prefect deployment run ablations/t_min --param values='[0.0, 0.2]' \\
        --param overrides='["discrete.train.steps=200"]' --watch

(The foundation-model t_min grid stays available as ``ablations`` flow, axis ``t_min``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from unmask.emigm.t_min import SweepInputs, load_inputs, log_point, run_point, write_table
from unmask.orchestration.ablation import refresh_report
from unmask.orchestration.settings import load_settings
from unmask.tracking import Tracker, tracking_uri
from unmask.tracking_tags import METRIC_FID, METRIC_TRAIN_SECONDS, t_min_tags


@task(name="t_min point", task_run_name="t_min={t_min}", cache_policy=NO_CACHE)
def point(
    inputs: SweepInputs,
    t_min: float,
    out_dir: str,
    n_fid: int | None,
    fid: bool,
    experiment: str,
    tracking_root: str,
    parent_run_id: str | None,
    tags: dict[str, Any],
) -> dict[str, Any]:
    """Train + sample + FID at ``t_min``; its MLflow run (nested under the sweep's)."""
    row = run_point(inputs, t_min, out_dir, n_fid=n_fid, fid=fid)
    row["mlflow_run_id"] = log_point(
        Tracker(root=tracking_root),
        experiment,
        row,
        inputs,
        parent_run_id=parent_run_id,
        tags=tags,
    )
    return row


@flow(name="ablations", log_prints=True)
def ablations(
    axis: str = "t_min",
    values: list[float] | None = None,
    pipeline: str = "pipelines/emigm-default",
    kind: str = "discrete",
    overrides: list[str] | None = None,
    n_fid: int | None = None,
    fid: bool = True,
    workdir: str = ".",
    experiment: str | None = None,
    settings: str = "flows/ablations.yaml",
) -> dict[str, Any]:
    """Train and compare the MAE of ``pipeline`` at each eMIGM t_min in ``values``."""
    if axis != "t_min":
        raise ValueError(f"flows/t_min.py runs the t_min axis only, got axis {axis!r}")
    root = Path(workdir).resolve()
    cfg = load_settings(root / settings)
    if values is None:
        values = list(cfg.axis("t_min").grid["emigm.t_min"])
    if not values or any(not 0 <= float(v) < 1 for v in values):
        raise ValueError(f"t_min values must be in [0, 1), got {values}")
    experiment = experiment or f"{cfg.experiment_prefix}t_min"
    log = get_run_logger()
    inputs = load_inputs(root / pipeline, kind, overrides=overrides or [])
    # the pipeline's own MLflow store unless $MLFLOW_TRACKING_URI names a server
    tracking_root = str((root / pipeline / inputs.params.tracking.root).resolve())
    runs = root / cfg.runs / f"t_min-{kind}"
    tags = {
        "prefect.flow_run_id": str(flow_run.id),
        "prefect.flow_run_name": flow_run.name or "",
        "unmask.pipeline": pipeline,
    }
    parent = Tracker(root=tracking_root)
    rows: list[dict[str, Any]] = []
    with parent.start_run(
        experiment,
        f"t_min sweep ({kind})",
        params={
            "values": values,
            "pipeline": pipeline,
            "kind": kind,
            "n_fid": n_fid,
            "overrides": overrides or [],
        },
        tags={**t_min_tags("sweep"), **tags},
    ):
        for v in values:
            row = point(
                inputs,
                float(v),
                str(runs / f"t_min={float(v):g}"),
                n_fid,
                fid,
                experiment,
                tracking_root,
                parent.run_id,
                tags,
            )
            fid_s = f"{row['fid']:.2f}" if row["fid"] is not None else row["fid_unavailable"]
            log.info(
                "t_min=%g: FID %s, %.1f s training (%.3f s/step, %.2f encoder tokens/sample)",
                v,
                fid_s,
                row["train_seconds"],
                row["seconds_per_step"],
                row["encoder_tokens_per_sample"],
            )
            rows.append(row)
        for r in rows:
            m = {f"{METRIC_TRAIN_SECONDS}.t_min_{r['t_min']:g}": r["train_seconds"]}
            if r["fid"] is not None:
                m[f"{METRIC_FID}.t_min_{r['t_min']:g}"] = r["fid"]
            parent.log_metrics(m, step=0)
        csv = write_table(rows, root / cfg.output / "t_min.csv")
        parent.log_artifact(csv)
        sweep_id = parent.run_id
    refresh_report(tracking_uri(root=tracking_root), csv.parent)
    log.info("table: %s (MLflow experiment %r, sweep run %s)", csv, experiment, sweep_id)
    return {
        "csv": str(csv),
        "experiment": experiment,
        "sweep_run_id": sweep_id,
        "rows": [
            {
                k: r[k]
                for k in (
                    "t_min",
                    "fid",
                    "fid_unavailable",
                    "train_seconds",
                    "seconds_per_step",
                    "encoder_tokens_per_sample",
                    "mlflow_run_id",
                )
            }
            for r in rows
        ],
    }


if __name__ == "__main__":
    ablations()
