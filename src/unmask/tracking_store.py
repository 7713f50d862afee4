"""Where MLflow runs go: one store per project, and the live server that serves it.

* :func:`tracking_uri` — ``$MLFLOW_TRACKING_URI`` when set (e.g. a local ``mlflow server``),
  else the URL of the MLflow server ``unmask stack up`` started on this store (recorded in
  ``<root>/server.json`` while it runs, :func:`announce_server` / :func:`withdraw_server`), else
  a sqlite store ``<root>/mlflow.db`` with artifacts in ``<root>/artifacts`` (root defaults to
  ``./mlruns``). One store, one writer: the stack's server and the sqlite file never take writes
  at the same time from our code.
* :func:`check_server` — a configured server must answer before a run starts
  (:class:`TrackingUnavailableError`, one line saying how to start one).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from unmask.errors import UserError

__all__ = ["SERVER_FILE", "TrackingUnavailableError", "tracking_uri", "serving",
           "announce_server", "withdraw_server", "artifact_root", "check_server"]


class TrackingUnavailableError(UserError, RuntimeError):
    """The configured MLflow tracking server does not answer."""


#: File beside a store's ``mlflow.db`` naming the live MLflow server that serves the store
#: (written by ``unmask stack up``, removed by ``unmask stack down``).
SERVER_FILE = "server.json"


def tracking_uri(root: str | Path | None = None) -> str:
    """Where runs go: ``$MLFLOW_TRACKING_URI`` if set; else, when a live MLflow server serves
    the store under ``root`` (:func:`serving`), that server's URL — so a store has one writer
    while ``unmask stack up`` runs; else ``sqlite:///<root>/mlflow.db`` (root: ./mlruns)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(root if root is not None else "mlruns").resolve()
    return serving(root) or f"sqlite:///{root / 'mlflow.db'}"


def serving(root: str | Path) -> str | None:
    """URL of the live MLflow server recorded in ``<root>/server.json`` (pid and start time
    still match a running process), else None. A stale file (server gone) is ignored."""
    path = Path(root) / SERVER_FILE
    try:
        info = json.loads(path.read_text())
        url, pid, created = str(info["url"]), int(info["pid"]), float(info["create_time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

    try:
        alive = abs(psutil.Process(pid).create_time() - created) <= 1.0
    except (psutil.Error, OSError):
        alive = False
    return url if alive else None


def announce_server(root: str | Path, url: str, pid: int, create_time: float) -> Path:
    """Record that the MLflow server ``url`` (process ``pid`` started at ``create_time``)
    serves the store under ``root``; :func:`tracking_uri` then sends clients there."""
    path = Path(root) / SERVER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": pid, "create_time": create_time}) + "\n")
    os.replace(tmp, path)
    return path


def withdraw_server(root: str | Path, url: str | None = None) -> None:
    """Remove ``<root>/server.json`` (only if it names ``url``, when given)."""
    path = Path(root) / SERVER_FILE
    try:
        if url is None or json.loads(path.read_text()).get("url") == url:
            path.unlink()
    except (OSError, ValueError):
        pass


def artifact_root(uri: str) -> Path | None:
    """Artifacts of a local sqlite store live beside the database file."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent / "artifacts"
    return None


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingUnavailableError` unless the server at ``uri`` (``http(s)://``)
    answers its health check; other URIs (sqlite, files) need no server."""
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

