"""End to end against real local servers: `unmask stack up` (Prefect server, MLflow server,
process work pool + worker, deployments) on free ports; `prefect deployment run ablations/nfe
--watch` from another directory with a tiny grid on a checkpoint this test trains; the MLflow
API shows one run per grid point with its metric and sample-grid artifact under one parent run,
the flow run is COMPLETED; a grid with a failing point fails that point's task and MLflow run
while the other point finishes; `unmask stack down` leaves no process of the stack behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from unmask.data import fashion_mnist
from unmask.orchestration import procs
from unmask.orchestration.evaluation import fid_available
from unmask.orchestration.sandbox import make_project
from unmask.orchestration.stack import PROFILE, STACK_ID, load_state

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not fashion_mnist.DEFAULT_ROOT.is_dir(),
                       reason="apt-get install dataset-fashion-mnist"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def env(home) -> dict[str, str]:
    """A user shell: its own PREFECT_HOME (profiles), no server configured, telemetry off."""
    e = {k: v for k, v in os.environ.items() if k not in {
        "PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_PROFILES_PATH",
        "UNMASK_STACK_DIR"}}
    e.update({"PREFECT_HOME": str(home / "user-prefect"), "PATH": f"{BIN}:{e.get('PATH', '')}",
              "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
              "DVC_NO_ANALYTICS": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    return e


@pytest.fixture(scope="module")
def project(home) -> Path:
    return make_project(home / "project")


class Watcher(threading.Thread):
    """Records every process carrying the stack id while the tests run."""

    def __init__(self, stack_id: str) -> None:
        super().__init__(daemon=True)
        self.stack_id, self.seen, self.stop = stack_id, {}, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for p in procs.marked(STACK_ID, self.stack_id):
                self.seen.setdefault((p.pid, p.create_time()), p)
            time.sleep(0.5)


def cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600):
    t = time.monotonic()
    out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=timeout)
    return out, time.monotonic() - t


@pytest.fixture(scope="module")
def stack(home, env, project):
    state_dir = home / "state"
    out, secs = cli([str(BIN / "unmask"), "stack", "up", "--state-dir",
                     str(state_dir), "--prefect-port", "0", "--mlflow-port", "0"], env, REPO)
    print(f"\nstack up: {secs:.1f}s\n{out.stdout}")
    assert out.returncode == 0, out.stdout + out.stderr
    state = load_state(state_dir)
    watcher = Watcher(state.stack_id)
    watcher.start()
    yield state, watcher
    watcher.stop.set()
    if load_state(state_dir) is not None:  # a failed test before test_down: clean up anyway
        cli([str(BIN / "unmask"), "stack", "down", "--state-dir",
             str(state_dir), "--grace", "3"], env, REPO)


def api(state, path: str, body: dict | None = None):
    req = urllib.request.Request(
        f"{state.api_url}{path}", data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def run_deployment(name: str, params: dict, env, cwd) -> tuple[str, subprocess.CompletedProcess]:
    args = [str(BIN / "prefect"), "deployment", "run", name, "--watch", "--watch-timeout", "600"]
    for k, v in params.items():
        args += ["--param", f"{k}={json.dumps(v)}"]
    out, secs = cli(args, env, cwd, timeout=700)
    print(f"{name}: {secs:.1f}s (rc {out.returncode})\n{out.stdout[-1500:]}")
    m = re.search(r"UUID: ([0-9a-f-]{36})", out.stdout)
    assert m, out.stdout + out.stderr
    return m.group(1), out


def trial_runs(state, experiment: str, flow_run_id: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=state.mlflow_url)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id],
                         filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    parents = [r for r in runs if r.data.tags.get("unmask.kind") == "sweep"]
    assert len(parents) == 1
    trials = [r for r in runs if r.data.tags.get("unmask.kind") == "trial"]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trials)
    return c, parents[0], trials


def test_up(stack, env):
    state, _ = stack
    assert set(state.services) == {"prefect", "mlflow", "worker"}
    assert all(procs.is_running(s) for s in state.services.values())
    assert urllib.request.urlopen(f"{state.mlflow_url}/health", timeout=10).status == 200
    assert api(state, "/health") is True
    profiles = Path(env["PREFECT_HOME"]) / "profiles.toml"
    assert f'active = "{PROFILE}"' in profiles.read_text()
    names = {d["name"] for d in api(state, "/deployments/filter", {})}
    assert {"nfe", "temperature", "cfg", "schedule", "t_min", "default"} <= names


def test_nfe_grid(stack, env, project, home):
    state, _ = stack
    # From another directory, with no PREFECT_API_URL: the activated profile finds the server.
    flow_run_id, out = run_deployment(
        "ablations/nfe", {"values": [2, 4], "workdir": str(project), "n_per_class": 1},
        env, home)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert api(state, f"/flow_runs/{flow_run_id}")["state"]["type"] == "COMPLETED"

    c, parent, trials = trial_runs(state, "ablations/nfe", flow_run_id)
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.params["point.sample.steps"] for r in trials) == ["2", "4"]
    assert all(r.data.params["sample.steps"] == r.data.params["point.sample.steps"] for r in trials)
    for r in trials:
        assert r.info.status == "FINISHED"
        primary = r.data.tags["unmask.primary_metric"]
        assert primary == ("fid" if fid_available()[0] else "hist_tv")
        assert {primary, "nfe", "seconds_per_sample", "hist_tv"} <= set(r.data.metrics)
        assert r.data.metrics["nfe"] > 0
        arts = {a.path for a in c.list_artifacts(r.info.run_id, "samples")}
        assert "samples/grid.png" in arts
        png = Path(c.download_artifacts(r.info.run_id, "samples/grid.png", str(home)))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (project / "reports/ablations/nfe.csv").read_text().splitlines()
    assert len(table) == 3 and all(",completed," in row for row in table[1:])


def test_failing_trial_fails_its_task_and_run_only(stack, env, project, home):
    state, _ = stack
    flow_run_id, out = run_deployment(
        "ablations/sampler", {"values": ["mdm", "bogus"], "workdir": str(project),
                              "metric": "stats", "retries": 0}, env, home)
    assert out.returncode != 0
    assert api(state, f"/flow_runs/{flow_run_id}")["state"]["type"] == "FAILED"
    tasks = api(state, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    states = {t["name"]: t["state"]["type"] for t in tasks}
    assert states == {"method=mdm": "COMPLETED", "method=bogus": "FAILED"}, states

    _, parent, trials = trial_runs(state, "ablations/sampler", flow_run_id)
    by_method = {r.data.params["point.sample.method"]: r for r in trials}
    assert by_method["mdm"].info.status == "FINISHED" and "hist_tv" in by_method["mdm"].data.metrics
    assert by_method["bogus"].info.status == "FAILED"
    assert "bogus" in by_method["bogus"].data.tags["unmask.error"]
    assert parent.info.status == "FAILED"


def test_down_leaves_nothing(stack, env, home):
    state, watcher = stack
    recorded = list(state.services.values())
    out, secs = cli([str(BIN / "unmask"), "stack", "down",
                     "--state-dir", str(state.state_dir), "--grace", "5"], env, REPO)
    print(f"stack down: {secs:.1f}s\n{out.stdout}")
    assert out.returncode == 0, out.stderr
    watcher.stop.set()
    watcher.join(5)
    assert not any(procs.is_running(s) for s in recorded)
    assert procs.marked(STACK_ID, state.stack_id) == []
    seen = list(watcher.seen.values())
    assert len(seen) > 3  # servers' children, flow-run processes, Ray were observed
    alive = [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [(p.pid, p.cmdline()[:3]) for p in alive]
    assert load_state(state.state_dir) is None
    profiles = (Path(env["PREFECT_HOME"]) / "profiles.toml").read_text()
    assert PROFILE not in profiles
