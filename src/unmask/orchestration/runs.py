"""MLflow runs of a sweep: one parent run per flow run, one nested run per grid point.

Tags (so the MLflow UI's compare view lines a sweep up; ``unmask.*`` names are namespaced):

- every run: ``unmask.ablation`` (axis), ``unmask.sweep`` (the parent run id),
  ``prefect.flow_run_id`` / ``prefect.flow_run_name`` when run by Prefect;
- parent: ``unmask.kind = sweep``; trial: ``unmask.kind = trial``, ``mlflow.parentRunId``,
  ``unmask.grid_key``, ``unmask.grid_index``, ``unmask.point`` (label), ``unmask.attempt``.

A trial retried by Ray Tune reuses its run (same parent and grid key), so a grid point has one
run per sweep. A run left by an exception is marked FAILED with the error in ``unmask.error``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unmask.tracking import Tracker, flatten

__all__ = [
    "KIND",
    "GRID_KEY",
    "client",
    "ensure_experiment",
    "finished_points",
    "run_link",
    "RunLogger",
    "TrialRun",
    "set_status",
]

KIND = "unmask.kind"
GRID_KEY = "unmask.grid_key"
_MAX_TAG = 4900


def client(uri: str):
    """An :class:`mlflow.tracking.MlflowClient` for ``uri``."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient  # why: mlflow is slow to import

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(uri: str, name: str) -> str:
    """Id of experiment ``name`` (created if missing; with a local sqlite store the artifacts go
    beside the database, as :class:`unmask.tracking.Tracker` does)."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        root = Path(uri[len("sqlite:///"):]).parent / "artifacts"
        location = (root / re.sub(r"[^\w.-]+", "_", name)).as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def finished_points(uri: str, experiment_id: str) -> dict[str, Any]:
    """{grid key: newest FINISHED trial run} in an experiment."""
    c = client(uri)
    found: dict[str, Any] = {}
    token = None
    while True:
        page = c.search_runs([experiment_id], filter_string=f"tags.`{KIND}` = 'trial' and "
                             "attributes.status = 'FINISHED'", max_results=1000,
                             order_by=["attributes.start_time DESC"], page_token=token)
        for run in page:
            key = run.data.tags.get(GRID_KEY)
            if key and key not in found:
                found[key] = run
        token = page.token
        if not token:
            return found


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """Where a user opens a run: the MLflow UI page of the run when ``uri`` is a server, else
    ``runs:/<id>`` in the named store (``mlflow ui --backend-store-uri <uri>`` shows it)."""
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"runs:/{run_id} ({uri})"


def set_status(uri: str, run_id: str, status: str, error: str | None = None) -> None:
    """Terminate a run with ``status`` (FINISHED / FAILED / KILLED), recording ``error``."""
    c = client(uri)
    if error:
        c.set_tag(run_id, "unmask.error", error[-_MAX_TAG:])
    c.set_terminated(run_id, status)


class RunLogger:
    """``log_metrics(metrics, step)`` into an existing run (the training loop's tracker on
    rank 0), metric names prefixed with ``prefix``. A tracking server that goes away does not
    stop training: records wait in a spool file under ``spool_dir`` and are sent when it
    answers again (:class:`unmask.tracking.Tracker`); :meth:`flush` sends what is left."""

    def __init__(self, uri: str, run_id: str, prefix: str = "",
                 spool_dir: str | Path | None = None) -> None:
        self.uri, self.run_id, self.prefix = uri, run_id, prefix
        self._tracker = Tracker(uri, spool_dir=spool_dir)
        self._tracker._push(run_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._tracker.log_metrics({f"{self.prefix}{k}": v for k, v in metrics.items()}, step)

    @property
    def pending(self) -> int:
        """Records not yet sent (the server is away)."""
        return self._tracker.pending

    def flush(self) -> bool:
        """Try to send buffered records now; True when none is left."""
        return self._tracker.flush(force=True)


class TrialRun:
    """Context manager for a trial's nested run: created (or, on a retry, reopened) on enter,
    terminated FINISHED / FAILED on exit.

    Args:
        uri: tracking URI. experiment_id: the sweep's experiment. parent_run_id: the sweep run.
        key: the grid key. name: run name. tags: extra tags.
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, key: str, name: str,
                 tags: Mapping[str, Any] | None = None) -> None:
        self.uri, self.experiment_id, self.parent = uri, experiment_id, parent_run_id
        self.key, self.name, self.tags = key, name, {k: str(v) for k, v in (tags or {}).items()}
        self.client = client(uri)
        self.run_id: str | None = None
        self.attempt = 1

    def _existing(self) -> Any:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{GRID_KEY}` = '{self.key}' and "
                          f"tags.`mlflow.parentRunId` = '{self.parent}'",
            max_results=1)
        return runs[0] if runs else None

    def __enter__(self) -> TrialRun:
        old = self._existing()
        tags = {**self.tags, KIND: "trial", GRID_KEY: self.key, "mlflow.parentRunId": self.parent,
                "unmask.sweep": self.parent}
        if old is not None:
            self.run_id = old.info.run_id
            self.attempt = int(old.data.tags.get("unmask.attempt", "1")) + 1
            self.client.update_run(self.run_id, status="RUNNING")
            for k, v in self.tags.items():  # this attempt's node, device and trial id
                self.client.set_tag(self.run_id, k, v)
        else:
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=self.name)
            self.run_id = run.info.run_id
        self.client.set_tag(self.run_id, "unmask.attempt", str(self.attempt))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.run_id is None:
            return
        error = f"{exc_type.__name__}: {exc}" if exc_type is not None else None
        set_status(self.uri, self.run_id, "FAILED" if exc_type else "FINISHED", error)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param  # why: mlflow is slow to import

        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        RunLogger(self.uri, self.run_id).log_metrics(metrics, step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v)[:_MAX_TAG])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def logger(self, prefix: str = "") -> RunLogger:
        return RunLogger(self.uri, self.run_id, prefix)
