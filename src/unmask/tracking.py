"""Thin MLflow helper: one place that decides where runs go and how they are logged.

* :func:`tracking_uri` — where runs go (:mod:`unmask.tracking_store`: ``$MLFLOW_TRACKING_URI``,
  else the server ``unmask stack up`` runs on this store, else ``./mlruns/mlflow.db``).
* :class:`Tracker` — ``start_run(...)`` / ``log_metrics`` / ``log_params`` / ``log_artifact``
  through :class:`mlflow.tracking.MlflowClient` (no fluent global state, so nested runs and
  several trackers coexist). Use as a context manager; a run left by an exception is FAILED.
* :class:`NullTracker` — the same API with no backend; it keeps what was logged in memory
  (handy in tests).

Server outages: a :class:`Tracker` whose server does not answer when the run starts raises
:class:`TrackingUnavailableError` (one line saying how to start one). If the server goes away
*during* a run, nothing is lost and the run goes on: every metric, param, tag, artifact and the
final status are appended to a local spool file (``<spool_dir>/<id>.jsonl``, default
``./mlruns/spool``, or ``$UNMASK_TRACKING_SPOOL``) and re-sent in order, with their original
timestamps and steps, as soon as the server answers again (tried at most every
``retry_every`` seconds). Records still unsent when the tracker finishes stay in the file;
``python -m unmask.tracking import <file>`` sends them later (:func:`import_spool`).

mlflow is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from unmask.tracking_store import (
    SERVER_FILE,
    TrackingUnavailableError,
    announce_server,
    artifact_root,
    check_server,
    serving,
    tracking_uri,
    withdraw_server,
)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__all__ = ["tracking_uri", "serving", "announce_server", "withdraw_server", "SERVER_FILE",
           "flatten", "Tracker", "NullTracker", "TrackingUnavailableError",
           "import_spool"]

_MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
_BATCH = 100  # MLflow's limit on params per log_batch


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


def _apply(client: Any, op: dict[str, Any]) -> None:
    """Send one recorded operation (see :class:`Tracker`) through an MlflowClient."""
    from mlflow.entities import Metric, Param, RunTag  # why: mlflow is slow to import

    kind, run_id = op["op"], op["run_id"]
    if kind == "metrics":
        items = [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in op["items"]]
        client.log_batch(run_id, metrics=items)
    elif kind == "params":
        items = [Param(k, v) for k, v in op["items"].items()]
        for i in range(0, len(items), _BATCH):
            client.log_batch(run_id, params=items[i : i + _BATCH])
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["items"].items()])
    elif kind == "artifact":
        path = Path(op["path"])
        if path.is_dir():
            client.log_artifacts(run_id, str(path), op.get("artifact_path"))
        else:
            client.log_artifact(run_id, str(path), op.get("artifact_path"))
    elif kind == "terminate":
        client.set_terminated(run_id, op["status"], end_time=op.get("time"))
    else:
        raise ValueError(f"unknown tracking operation {kind!r}")


def _default_spool_dir() -> Path:
    return Path(os.environ.get("UNMASK_TRACKING_SPOOL") or Path("mlruns") / "spool")


def _http_defaults() -> None:
    """Fail fast on a dead server (MLflow's default retries for ~4 min per request)."""
    for k, v in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}.items():
        os.environ.setdefault(k, v)


class Tracker(_RunStack):
    """Log runs to MLflow.

    Args:
        uri: tracking URI; default :func:`tracking_uri` (``root`` picks the local store's folder).
        root: folder of the local sqlite store when no URI is configured.
        spool_dir: where records go while a tracking server is unreachable (see the module
            docstring).
        retry_every: seconds between attempts to reach a server that went away.

    Example::

        with Tracker().start_run("imagenet256", "di-546m", params=cfg) as tr:
            tr.log_metrics({"loss": 2.3}, step=100)
    """

    def __init__(self, uri: str | None = None, root: str | Path | None = None,
                 spool_dir: str | Path | None = None, retry_every: float = 5.0) -> None:
        super().__init__()
        self.uri = uri or tracking_uri(root)
        self._client = None
        self.spool_dir = Path(spool_dir) if spool_dir is not None else _default_spool_dir()
        self.retry_every = retry_every
        self._pending: list[dict[str, Any]] = []
        self._next_try = 0.0
        self._spool_file: Path | None = None

    @property
    def client(self):
        """The :class:`mlflow.tracking.MlflowClient` (created on first use)."""
        if self._client is None:
            check_server(self.uri)
            if self.uri.startswith(("http://", "https://")):
                _http_defaults()
            from mlflow.tracking import MlflowClient  # why: mlflow is slow to import

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def check(self) -> None:
        """Raise :class:`TrackingUnavailableError` (one line: how to start one) if the
        configured server does not answer."""
        check_server(self.uri)

    # -- buffering -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records waiting for the server."""
        return len(self._pending)

    @property
    def spool_file(self) -> Path | None:
        """The local file holding unsent records (None when nothing was ever buffered)."""
        return self._spool_file

    def _reachable(self) -> bool:
        try:
            check_server(self.uri, timeout=2.0)
        except TrackingUnavailableError:
            return False
        return True

    def _write_spool(self) -> None:
        assert self._spool_file is not None
        tmp = self._spool_file.with_name(self._spool_file.name + ".tmp")
        tmp.write_text("".join(json.dumps(op) + "\n" for op in self._pending))
        os.replace(tmp, self._spool_file)

    def _buffer(self, op: dict[str, Any]) -> None:
        if self._spool_file is None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self._spool_file = self.spool_dir / f"{uuid.uuid4().hex}.jsonl"
        if op["op"] == "artifact":  # the file may change or vanish before the server returns
            dst = self.spool_dir / f"{self._spool_file.stem}-files" / uuid.uuid4().hex
            src = Path(op["path"])
            dst.mkdir(parents=True)
            if src.is_dir():
                shutil.copytree(src, dst / src.name)
            else:
                shutil.copy2(src, dst / src.name)
            op = {**op, "path": str(dst / src.name)}
        if not self._pending:
            warnings.warn(
                f"MLflow server {self.uri} went away; training goes on and tracking records are "
                f"kept in {self._spool_file} until it answers again", stacklevel=4)
            self._next_try = time.monotonic() + self.retry_every
        self._pending.append(op)
        with open(self._spool_file, "a") as f:
            f.write(json.dumps(op) + "\n")

    def flush(self, force: bool = False) -> bool:
        """Send buffered records (if the retry interval has passed, or ``force``). True when
        nothing is left pending."""
        if not self._pending:
            return True
        if not force and time.monotonic() < self._next_try:
            return False
        sent = 0
        try:
            for op in self._pending:
                _apply(self.client, op)
                sent += 1
        except Exception:
            if self._reachable():
                raise
            return False
        finally:
            if sent:
                self._pending = self._pending[sent:]
                self._write_spool()
            if self._pending:
                self._next_try = time.monotonic() + self.retry_every
        self._spool_file.unlink(missing_ok=True)
        self._spool_file = None
        return True

    def _send(self, op: dict[str, Any]) -> None:
        if self._pending and not self.flush():
            self._buffer(op)
            return
        try:
            _apply(self.client, op)
        except Exception:
            if not self.uri.startswith(("http://", "https://")) or self._reachable():
                raise
            self._buffer(op)

    # -- runs ----------------------------------------------------------------------------------

    def _experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        art = artifact_root(self.uri)
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
        check_server(self.uri)  # a new run needs the server (an id): one clear error
        self.flush(force=True)
        run = self.client.create_run(self._experiment_id(experiment), tags=tags,
                                     run_name=run_name)
        self._push(run.info.run_id)
        if params:
            self.log_params(params)
        return self

    def _terminate(self, run_id: str, status: str) -> None:
        self._send({"op": "terminate", "run_id": run_id, "status": status,
                    "time": int(time.time() * 1000)})
        if not self._runs and not self.flush(force=True):
            warnings.warn(
                f"{len(self._pending)} MLflow records could not be sent to {self.uri}; they are "
                f"kept in {self._spool_file}: run `python -m unmask.tracking import "
                f"{self._spool_file}` once the server is back", stacklevel=3)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._send({"op": "params", "run_id": self._require_run(), "items": flatten(params)})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._send({"op": "metrics", "run_id": self._require_run(),
                    "items": [[k, float(v), now, int(step)] for k, v in metrics.items()]})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._send({"op": "tags", "run_id": self._require_run(),
                    "items": {k: str(v) for k, v in tags.items()}})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file (or a folder, recursively) into the run's artifacts."""
        self._send({"op": "artifact", "run_id": self._require_run(), "path": str(path),
                    "artifact_path": artifact_path})


def import_spool(path: str | Path, uri: str | None = None) -> int:
    """Send the records of a spool file left by a :class:`Tracker` (in order) to ``uri``
    (default :func:`tracking_uri`); delete the file once all are sent. Returns their number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no spool file at {path}")
    ops = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            ops.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{i}: not a tracking record (truncated write?)") from None
    tracker = Tracker(uri)
    for op in ops:
        _apply(tracker.client, op)
    path.unlink()
    shutil.rmtree(path.with_name(f"{path.stem}-files"), ignore_errors=True)
    return len(ops)


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

    def check(self) -> None:
        """Nothing to reach."""

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


def make_tracker(cfg: Any) -> _RunStack:
    """The tracker of a params ``tracking`` section (``enabled``, ``root``): an MLflow
    :class:`Tracker` (``$MLFLOW_TRACKING_URI``, else the project's store under ``cfg.root``) or a
    :class:`NullTracker` when disabled. Every stage gets its tracker here."""
    return Tracker(root=cfg.root) if cfg.enabled else NullTracker()


def main(argv: list[str] | None = None) -> int:
    """``python -m unmask.tracking import FILE [--uri URI]``."""

    parser = argparse.ArgumentParser(prog="python -m unmask.tracking")
    sub = parser.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="send the records of a spool file to MLflow")
    imp.add_argument("file")
    imp.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    try:
        n = import_spool(args.file, args.uri)
    except (TrackingUnavailableError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"sent {n} records from {args.file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
