"""Thin MLflow helper: one place that decides where runs go and how they are logged.

* :func:`tracking_uri` — ``$MLFLOW_TRACKING_URI`` when set (e.g. a local ``mlflow server``),
  else a sqlite store ``<root>/mlflow.db`` with artifacts in ``<root>/artifacts`` (root defaults to
  ``./mlruns``).
* :class:`Tracker` — ``start_run(...)`` / ``log_metrics`` / ``log_params`` / ``log_artifact``
  through :class:`mlflow.tracking.MlflowClient` (no fluent global state, so nested runs and
  several trackers coexist). Use as a context manager; a run left by an exception is FAILED.
* :class:`NullTracker` — the same API with no backend; it keeps what was logged in memory
  (handy in tests).

mlflow is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__all__ = ["tracking_uri", "flatten", "Tracker", "NullTracker", "TrackingUnavailableError"]

_MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
_BATCH = 100  # MLflow's limit on params per log_batch


class TrackingUnavailableError(RuntimeError):
    """The configured MLflow tracking server does not answer."""


def tracking_uri(root: str | Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<root>/mlflow.db`` (root: ./mlruns)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(root if root is not None else "mlruns").resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def _artifact_root(uri: str) -> Path | None:
    """Artifacts of a local sqlite store live beside the database file."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent / "artifacts"
    return None


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}, "c": [1, 2]} → {"a.b": "1", "c": "[1, 2]"} (values as strings)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = str(value)[:_MAX_PARAM_LEN]
    return out


def _check_server(uri: str, timeout: float = 5.0) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as r:
            r.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} does not answer ({reason}); start one with "
            "`mlflow server --backend-store-uri sqlite:///mlruns/mlflow.db "
            "--default-artifact-root mlruns/artifacts --host 127.0.0.1 --port 5000` "
            "or unset MLFLOW_TRACKING_URI to log to a local sqlite store"
        ) from None


class _RunStack:
    """Run bookkeeping shared by both trackers: ``with tracker.start_run(...)`` and
    ``with tracker: tracker.start_run(...)`` both end the runs opened inside the block."""

    def __init__(self) -> None:
        self._runs: list[str] = []
        self._marks: list[int] = []
        self._fresh = False

    @property
    def run_id(self) -> str | None:
        """The innermost active run."""
        return self._runs[-1] if self._runs else None

    def _require_run(self) -> str:
        if not self._runs:
            raise RuntimeError("no active run: call start_run(...) first")
        return self._runs[-1]

    def _push(self, run_id: str) -> None:
        self._runs.append(run_id)
        self._fresh = True

    def _terminate(self, run_id: str, status: str) -> None:  # overridden
        pass

    def end_run(self, status: str = "FINISHED") -> None:
        """End the innermost active run."""
        self._terminate(self._runs.pop(), status)

    def __enter__(self):
        self._marks.append(len(self._runs) - 1 if self._fresh else len(self._runs))
        self._fresh = False
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        mark = self._marks.pop() if self._marks else 0
        while len(self._runs) > max(mark, 0):
            self.end_run("FAILED" if exc_type is not None else "FINISHED")


class Tracker(_RunStack):
    """Log runs to MLflow.

    Args:
        uri: tracking URI; default :func:`tracking_uri` (``root`` picks the local store's folder).
        root: folder of the local sqlite store when no URI is configured.

    Example::

        with Tracker().start_run("imagenet256", "di-546m", params=cfg) as tr:
            tr.log_metrics({"loss": 2.3}, step=100)
    """

    def __init__(self, uri: str | None = None, root: str | Path | None = None) -> None:
        super().__init__()
        self.uri = uri or tracking_uri(root)
        self._client = None

    @property
    def client(self):
        """The :class:`mlflow.tracking.MlflowClient` (created on first use)."""
        if self._client is None:
            _check_server(self.uri)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        art = _artifact_root(self.uri)
        location = (art / re.sub(r"[^\w.-]+", "_", name)).as_uri() if art else None
        return self.client.create_experiment(name, artifact_location=location)

    def start_run(
        self,
        experiment: str,
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        nested: bool = False,
    ) -> Tracker:
        """Open a run in ``experiment`` (created if missing) and log ``params`` (flattened).
        ``nested=True`` makes it a child of the active run."""
        if self._runs and not nested:
            raise RuntimeError(f"run {self.run_id} is active: pass nested=True or end it first")
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if nested and self._runs:
            tags["mlflow.parentRunId"] = self._runs[-1]
        run = self.client.create_run(self._experiment_id(experiment), tags=tags,
                                     run_name=run_name)
        self._push(run.info.run_id)
        if params:
            self.log_params(params)
        return self

    def _terminate(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        run_id = self._require_run()
        items = [Param(k, v) for k, v in flatten(params).items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, params=items[i : i + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        run_id = self._require_run()
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        self.client.log_batch(run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        run_id = self._require_run()
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file (or a folder, recursively) into the run's artifacts."""
        run_id, path = self._require_run(), Path(path)
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)


class NullTracker(_RunStack):
    """Tracker API without a backend; records what it is given (``params``, ``metrics``,
    ``artifacts``, ``tags``) so tests can inspect it."""

    def __init__(self) -> None:
        super().__init__()
        self.params: dict[str, str] = {}
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.artifacts: list[Path] = []
        self.tags: dict[str, str] = {}
        self._count = 0

    def start_run(self, experiment: str = "", run_name: str | None = None,
                  params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None, nested: bool = False) -> NullTracker:
        self._count += 1
        self._push(f"null-{self._count}")
        self.log_params(params or {})
        self.set_tags(tags or {})
        return self

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(flatten(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.metrics.append((int(step), {k: float(v) for k, v in metrics.items()}))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(Path(path))

    def history(self, key: str) -> Iterator[tuple[int, float]]:
        """(step, value) pairs logged for metric ``key``."""
        return ((s, m[key]) for s, m in self.metrics if key in m)
