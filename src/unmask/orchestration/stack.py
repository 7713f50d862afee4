"""The local service stack: ``unmask stack up`` / ``unmask stack down`` / ``unmask stack status``.

``up`` starts, on 127.0.0.1,

1. a Prefect server (``prefect server start``; its database under ``<state>/prefect``),
2. an MLflow tracking server over the *project's own store* (``tracking.root`` of the project's
   ``params.yaml``, default ``mlruns/``: ``mlflow.db`` + ``artifacts/``), so the UI shows the
   runs ``make repro`` logged before ``up`` next to every sweep; while it runs,
   ``<store>/server.json`` names it and :func:`unmask.tracking.tracking_uri` sends every client
   of the store (DVC stages, sweeps, benchmarks) to the server instead of the sqlite file — one
   writer at a time. Artifacts stay plain files under ``<store>/artifacts`` (readable with or
   without the server; on a multi-node Ray cluster that folder must be shared),
3. the process work pool named in ``flows/prefect.yaml``, the deployments of that file
   (``prefect deploy --all``), and a Prefect worker polling the pool; flow runs inherit its
   environment (``PREFECT_API_URL``, ``MLFLOW_TRACKING_URI``, telemetry off),

writes the pids, ports, URLs and log paths to ``<state>/stack.json`` (state folder default
``.unmask/stack``, git-ignored) and prints the two UI URLs. Unless ``set_profile=False`` it also
makes a Prefect profile ``unmask-stack`` (``PREFECT_API_URL`` = this server) the active one, so
``prefect deployment run ablations/nfe`` in any other shell talks to this server; ``down``
re-activates the previous profile.

``down`` stops exactly the processes recorded in ``stack.json`` (their process groups and
descendants, SIGTERM then SIGKILL after a grace period: the worker ignores SIGTERM), by pid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import toml
import yaml

from unmask.errors import UserError
from unmask.orchestration import procs
from unmask.orchestration.env import HOST, free_port, service_env
from unmask.paths import resolve
from unmask.tracking import announce_server, withdraw_server

__all__ = [
    "StackError",
    "StackConfig",
    "StackState",
    "server_commands",
    "PROFILE",
    "default_state_dir",
    "pool_name",
    "up",
    "down",
    "status",
    "load_state",
    "project_store",
]

PROFILE = "unmask-stack"
STATE_FILE = "stack.json"
#: Environment variable carrying the stack's id into every process it starts (and their
#: descendants, Ray included): ``down`` also stops stragglers that left the process groups.
STACK_ID = "UNMASK_STACK_ID"
SERVICES = ("prefect", "mlflow", "worker")


class StackError(UserError, RuntimeError):
    """The stack could not be started (the message names the service and its log)."""


def default_state_dir() -> Path:
    """``$UNMASK_STACK_DIR`` or ``.unmask/stack`` in the working directory."""
    return Path(os.environ.get("UNMASK_STACK_DIR", ".unmask/stack")).resolve()


def _bin(name: str) -> str:
    """The console script ``name`` of this interpreter's environment (else from PATH)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"`{name}` is not installed in this environment")
    return found


def pool_name(prefect_file: str | Path) -> str:
    """The (single) work pool the deployments of ``prefect_file`` use."""
    doc = yaml.safe_load(Path(prefect_file).read_text()) or {}
    pools = {(d.get("work_pool") or {}).get("name") for d in doc.get("deployments") or []}
    pools.discard(None)
    if len(pools) != 1:
        raise StackError(f"{prefect_file}: expected one work pool across deployments, "
                         f"found {sorted(pools) or 'none'}")
    return pools.pop()


@dataclass
class StackConfig:
    """How to start the stack.

    Attributes:
        repo: the project root (``flows/prefect.yaml`` lives below it; deployments and the
            worker run from here).
        state_dir: pids, logs, databases (default :func:`default_state_dir`).
        prefect_port / mlflow_port: preferred ports; taken if free, else a free one is picked
            (0: always a free one).
        deploy: register the deployments of ``flows/prefect.yaml``.
        set_profile: activate a Prefect profile pointing at this server (see module doc).
        worker_limit: concurrent flow runs of the worker.
        timeout: seconds to wait for each service.
        host: the address the servers bind; 127.0.0.1 (this machine only) unless the user
            passes another one explicitly.
        store: the MLflow store folder the server serves (default :func:`project_store`).
    """

    repo: Path = field(default_factory=Path.cwd)
    state_dir: Path = field(default_factory=default_state_dir)
    prefect_port: int = 4200
    mlflow_port: int = 5000
    deploy: bool = True
    set_profile: bool = True
    worker_limit: int = 1
    timeout: float = 240.0
    prefect_file: str = "flows/prefect.yaml"
    host: str = HOST
    store: Path | None = None


def project_store(repo: str | Path) -> Path:
    """The project's MLflow store folder: ``tracking.root`` of ``<repo>/params.yaml`` resolved
    against ``repo`` (:func:`unmask.paths.resolve`); ``<repo>/mlruns`` without a readable one."""

    root = "mlruns"
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, yaml.YAMLError):
        root = str((yaml.safe_load((Path(repo) / "params.yaml").read_text()) or {})
                   .get("tracking", {}).get("root") or root)
    return resolve(root, repo)


def server_commands(cfg: StackConfig, state_dir: Path, prefect_port: int,
                    mlflow_port: int) -> dict[str, list[str]]:
    """The argv of the Prefect and MLflow servers ``up`` starts; both bind ``cfg.host``. The
    MLflow server serves the project's store (``mlflow.db``, artifacts as local files beside
    it, the layout :class:`unmask.tracking.Tracker` uses without a server)."""
    store = Path(cfg.store or project_store(cfg.repo)).resolve()
    return {
        "prefect": [_bin("prefect"), "server", "start", "--host", cfg.host, "--port",
                    str(prefect_port)],
        "mlflow": [_bin("mlflow"), "server",
                   "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                   "--default-artifact-root", str(store / "artifacts"),
                   "--no-serve-artifacts", "--host", cfg.host, "--port", str(mlflow_port),
                   "--workers", "1"],
    }


@dataclass
class StackState:
    """What ``up`` recorded: services (``procs.ProcInfo``), URLs, environment for clients."""

    state_dir: Path
    services: dict[str, procs.ProcInfo]
    prefect_url: str
    mlflow_url: str
    pool: str
    profile: dict[str, Any] = field(default_factory=dict)
    stack_id: str = ""
    store: str = ""

    @property
    def api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def client_env(self) -> dict[str, str]:
        """Environment a client shell needs to talk to this stack."""
        return {"PREFECT_API_URL": self.api_url, "MLFLOW_TRACKING_URI": self.mlflow_url}

    def save(self) -> Path:
        path = self.state_dir / STATE_FILE
        data = {
            "state_dir": str(self.state_dir),
            "services": {k: v.to_dict() for k, v in self.services.items()},
            "prefect_url": self.prefect_url,
            "mlflow_url": self.mlflow_url,
            "pool": self.pool,
            "profile": self.profile,
            "stack_id": self.stack_id,
            "store": self.store,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
        return path


def load_state(state_dir: str | Path | None = None) -> StackState | None:
    """The recorded stack in ``state_dir``, or None."""
    state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    services = {k: procs.ProcInfo(**v) for k, v in d["services"].items()}
    return StackState(Path(d["state_dir"]), services, d["prefect_url"], d["mlflow_url"],
                      d["pool"], d.get("profile") or {}, d.get("stack_id", ""),
                      d.get("store", ""))


# --- Prefect profile (so that `prefect ...` in another shell reaches this server) ---------------


def _profiles_path(env: dict[str, str]) -> Path:
    if env.get("PREFECT_PROFILES_PATH"):
        return Path(env["PREFECT_PROFILES_PATH"]).expanduser()
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    return home / "profiles.toml"


def _activate_profile(api_url: str, env: dict[str, str]) -> dict[str, Any]:
    path = _profiles_path(env)
    doc = toml.loads(path.read_text()) if path.is_file() else {}
    previous = doc.get("active")
    doc.setdefault("profiles", {})[PROFILE] = {"PREFECT_API_URL": api_url}
    doc["active"] = PROFILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml.dumps(doc))
    return {"path": str(path), "previous": previous}


def _restore_profile(profile: dict[str, Any]) -> None:
    path = Path(profile.get("path", ""))
    if not path.is_file():
        return
    doc = toml.loads(path.read_text())
    doc.get("profiles", {}).pop(PROFILE, None)
    if doc.get("active") == PROFILE:
        if profile.get("previous") and profile["previous"] != PROFILE:
            doc["active"] = profile["previous"]
        else:
            doc.pop("active", None)
    path.write_text(toml.dumps(doc))


# --- up / down / status ---------------------------------------------------------------------------


def _tail(path: str | Path, n: int = 25) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _run(argv: list[str], env: dict[str, str], cwd: Path, log: Path, what: str,
         timeout: float) -> None:
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        res = subprocess.run(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                             timeout=timeout)
    if res.returncode != 0:
        raise StackError(f"{what} failed (exit {res.returncode}); see {log}:\n{_tail(log)}")


def _workers_online(api_url: str, pool: str) -> bool:
    req = urllib.request.Request(f"{api_url}/work_pools/{pool}/workers/filter", data=b"{}",
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return any(w.get("status") == "ONLINE" or w.get("last_heartbeat_time")
                       for w in json.loads(r.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait(what: str, ok: Callable[[], bool], info: procs.ProcInfo, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.is_running(info):
            raise StackError(f"{what} exited during start-up; see {info.log}:\n{_tail(info.log)}")
        if ok():
            return
        time.sleep(0.5)
    raise StackError(f"{what} did not become ready in {timeout:.0f}s; see {info.log}:\n"
                     f"{_tail(info.log)}")


def up(cfg: StackConfig | None = None, echo: Callable[[str], None] = print) -> StackState:
    """Start the stack (see the module docstring). If a recorded stack is fully running it is
    returned as is; a partly dead one is stopped first."""
    cfg = cfg or StackConfig()
    repo, state_dir = Path(cfg.repo).resolve(), Path(cfg.state_dir).resolve()
    existing = load_state(state_dir)
    if existing is not None:
        if all(procs.is_running(s) for s in existing.services.values()):
            echo(f"stack already up (state in {state_dir})")
            return existing
        down(state_dir, echo=echo)
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    prefect_home = state_dir / "prefect"
    store = Path(cfg.store or project_store(repo)).resolve()
    cfg = dataclasses.replace(cfg, store=store)
    for d in (logs, prefect_home, store / "artifacts"):
        d.mkdir(parents=True, exist_ok=True)
    prefect_file = repo / cfg.prefect_file
    pool = pool_name(prefect_file)

    p_port = free_port(cfg.prefect_port or None)
    m_port = free_port(cfg.mlflow_port or None)
    while m_port == p_port:
        m_port = free_port()
    client_host = HOST if cfg.host in ("0.0.0.0", "::") else cfg.host
    prefect_url = f"http://{client_host}:{p_port}"
    mlflow_url = f"http://{client_host}:{m_port}"
    api_url = f"{prefect_url}/api"
    stack_id = uuid.uuid4().hex
    server_env = service_env({"PREFECT_HOME": str(prefect_home), "PREFECT_API_URL": api_url,
                              "PREFECT_SERVER_API_HOST": cfg.host,
                              "PREFECT_SERVER_API_PORT": str(p_port), STACK_ID: stack_id})
    server_env.pop("PREFECT_PROFILES_PATH", None)
    client_env = dict(server_env, MLFLOW_TRACKING_URI=mlflow_url,
                      PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="5")

    started: dict[str, procs.ProcInfo] = {}
    state = StackState(state_dir, started, prefect_url, mlflow_url, pool, stack_id=stack_id,
                       store=str(store))
    commands = server_commands(cfg, state_dir, p_port, m_port)
    try:
        started["prefect"] = procs.start(
            "prefect", commands["prefect"], logs / "prefect-server.log", env=server_env,
            cwd=state_dir)
        started["mlflow"] = procs.start(
            "mlflow", commands["mlflow"],
            logs / "mlflow-server.log",
            # No job runner (7 huey consumers): the stack only tracks runs.
            env=service_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", STACK_ID: stack_id}),
            cwd=state_dir)
        state.save()
        _wait("Prefect server", lambda: procs.poll(f"{api_url}/health", 1,
                                                   proc=started["prefect"]),
              started["prefect"], cfg.timeout)
        echo(f"Prefect server  {prefect_url}  (pid {started['prefect'].pid})")
        setup_log = logs / "setup.log"
        _run([_bin("prefect"), "--no-prompt", "work-pool", "create", pool, "--type", "process",
              "--overwrite"], client_env, repo, setup_log, f"creating work pool {pool!r}",
             cfg.timeout)
        if cfg.deploy:
            _run([_bin("prefect"), "--no-prompt", "deploy", "--all", "--prefect-file",
                  str(prefect_file)], client_env, repo, setup_log,
                 f"registering the deployments of {prefect_file}", cfg.timeout)
            echo(f"deployments     registered from {prefect_file.relative_to(repo)}")
        started["worker"] = procs.start(
            "worker", [_bin("prefect"), "worker", "start", "--pool", pool, "--type", "process",
                       "--limit", str(cfg.worker_limit)],
            logs / "worker.log", env=client_env, cwd=repo)
        state.save()
        _wait("MLflow server", lambda: procs.poll(f"{mlflow_url}/health", 1,
                                                  proc=started["mlflow"]),
              started["mlflow"], cfg.timeout)
        announce_server(store, mlflow_url, started["mlflow"].pid,
                        started["mlflow"].create_time)
        echo(f"MLflow server   {mlflow_url}  (pid {started['mlflow'].pid}, store {store})")
        _wait("Prefect worker", lambda: _workers_online(api_url, pool), started["worker"],
              cfg.timeout)
        echo(f"Prefect worker  pool {pool!r}  (pid {started['worker'].pid})")
        if cfg.set_profile:
            state.profile = _activate_profile(api_url, dict(os.environ))
        state.save()
    except BaseException:
        _stop_all(state, echo=lambda _: None)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    echo(f"state           {state_dir / STATE_FILE} (logs in {logs})")
    return state


def _stop_all(state: StackState, echo: Callable[[str], None], grace: float = 10.0) -> list[int]:
    stopped: list[int] = []
    if state.store:  # clients go back to the sqlite file before the server stops
        withdraw_server(state.store, state.mlflow_url)
    for name in ("worker", "prefect", "mlflow"):  # the worker first: no new flow runs
        info = state.services.get(name)
        if info is None:
            continue
        pids = procs.stop(info, grace=grace)
        stopped += pids
        echo(f"stopped {name} (pid {info.pid}" + (f" + {len(pids) - 1} children)"
                                                  if len(pids) > 1 else ")"))
    if state.stack_id:  # stragglers that left the groups (e.g. re-parented Ray processes)
        left = procs.marked(STACK_ID, state.stack_id)
        if left:
            first = state.services[next(iter(state.services))]
            stopped += procs.stop(first, grace=grace, extra=left)
            echo(f"stopped {len(left)} other process(es) of this stack: "
                 f"{', '.join(str(p.pid) for p in left)}")
    return stopped


def down(state_dir: str | Path | None = None, echo: Callable[[str], None] = print,
         grace: float = 10.0) -> list[int]:
    """Stop the processes recorded in ``state_dir`` and restore the Prefect profile.
    Returns the pids signalled (empty when nothing was running)."""
    state = load_state(state_dir)
    if state is None:
        echo("no stack recorded" + (f" in {state_dir}" if state_dir else ""))
        return []
    stopped = _stop_all(state, echo, grace)
    if state.profile:
        _restore_profile(state.profile)
    (state.state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def status(state_dir: str | Path | None = None) -> dict[str, Any]:
    """{service: {"pid", "running", "url"}} of the recorded stack (empty if none)."""
    state = load_state(state_dir)
    if state is None:
        return {}
    urls = {"prefect": state.prefect_url, "mlflow": state.mlflow_url}
    return {name: {"pid": info.pid, "running": procs.is_running(info), "url": urls.get(name),
                   "log": info.log}
            for name, info in state.services.items()}
