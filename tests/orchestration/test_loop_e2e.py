"""The researcher's loop, end to end, as a user runs it (README "The loop"): a git clone of this
repo whose real ``params.yaml`` is shrunk only by overrides (:mod:`unmask.orchestration.tiny`),

1. ``dvc repro`` of the default pipeline (VQ tokenizer → tokens → train → sample → evaluate →
   report), logging to the project's MLflow store ``mlruns/``;
2. ``unmask stack up`` in the clone (Prefect server, MLflow server over that same store,
   process worker, deployments) on free ports;
3. from another directory, through the Prefect CLI: ``prefect deployment run ablations/nfe``
   (sampling axis on the pipeline's checkpoint and tokenizer) and ``ablations/t_min`` (training
   axis: Ray Train inside Ray Tune) — both COMPLETED, each with its table and summary artifacts;
   a grid with a bad point fails that point's task and MLflow run only;
4. the stack's MLflow REST API lists the pipeline's runs (logged before the server started) and
   every trial, in one store;
5. ``unmask stack down`` leaves no process of the stack (Ray and flow runs included) behind.
"""

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
from unmask.orchestration.stack import PROFILE, STACK_ID, load_state
from unmask.orchestration.tiny import clone_project

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not fashion_mnist.DEFAULT_ROOT.is_dir(),
                       reason="apt-get install dataset-fashion-mnist"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("loop")


@pytest.fixture(scope="module")
def env(home) -> dict[str, str]:
    """A user shell: the venv on PATH, its own PREFECT_HOME, no server configured."""
    e = {k: v for k, v in os.environ.items() if k not in {
        "PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_PROFILES_PATH",
        "UNMASK_STACK_DIR", "PYTHONPATH"}}
    e.update({"PREFECT_HOME": str(home / "user-prefect"), "PATH": f"{BIN}:{e.get('PATH', '')}",
              "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
              "DVC_NO_ANALYTICS": "1", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"})
    return e


def cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 900):
    t = time.monotonic()
    out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=timeout)
    return out, time.monotonic() - t


@pytest.fixture(scope="module")
def project(home, env) -> Path:
    """A clone of the repo, shrunk by overrides, after `dvc repro` (the `make repro` step)."""
    clone = clone_project(home / "project")
    out, secs = cli([str(BIN / "dvc"), "repro"], env, clone, timeout=1200)
    print(f"\ndvc repro (tiny default pipeline): {secs:.1f}s")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for f in ("models/tokenizer.pt", "models/model.pt", "data/tokens/test/manifest.json",
              "metrics/metrics.json", "reports/index.html"):
        assert (clone / f).exists(), f
    return clone


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


@pytest.fixture(scope="module")
def stack(project, env):
    state_dir = project / ".unmask/stack"
    out, secs = cli([str(BIN / "unmask"), "stack", "up", "--prefect-port", "0",
                     "--mlflow-port", "0"], env, project)
    print(f"stack up: {secs:.1f}s\n{out.stdout}")
    assert out.returncode == 0, out.stdout + out.stderr
    state = load_state(state_dir)
    watcher = Watcher(state.stack_id)
    watcher.start()
    yield state, watcher
    watcher.stop.set()
    if load_state(state_dir) is not None:  # a failed test before test_down: clean up anyway
        cli([str(BIN / "unmask"), "stack", "down", "--grace", "3"], env, project)


def api(state, path: str, body: dict | None = None):
    req = urllib.request.Request(
        f"{state.api_url}{path}", data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def mlflow_api(state, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{state.mlflow_url}/api/2.0/mlflow/{path}",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def all_runs(state) -> list[dict]:
    """Every run of every experiment of the stack's MLflow server (REST API)."""
    exps = mlflow_api(state, "experiments/search", {"max_results": 1000})["experiments"]
    body = {"experiment_ids": [e["experiment_id"] for e in exps], "max_results": 1000}
    names = {e["experiment_id"]: e["name"] for e in exps}
    out = []
    for r in mlflow_api(state, "runs/search", body).get("runs", []):
        d = r["data"]
        out.append({"id": r["info"]["run_id"], "status": r["info"]["status"],
                    "name": r["info"].get("run_name", ""),
                    "experiment": names[r["info"]["experiment_id"]],
                    "tags": {t["key"]: t["value"] for t in d.get("tags", [])},
                    "params": {p["key"]: p["value"] for p in d.get("params", [])},
                    "metrics": {m["key"]: m["value"] for m in d.get("metrics", [])}})
    return out


def run_deployment(name: str, params: dict, env, cwd) -> tuple[str, subprocess.CompletedProcess]:
    args = [str(BIN / "prefect"), "deployment", "run", name, "--watch", "--watch-timeout", "1200"]
    for k, v in params.items():
        args += ["--param", f"{k}={json.dumps(v)}"]
    out, secs = cli(args, env, cwd, timeout=1300)
    print(f"{name}: {secs:.1f}s (rc {out.returncode})\n{out.stdout[-1500:]}")
    m = re.search(r"UUID: ([0-9a-f-]{36})", out.stdout)
    assert m, out.stdout + out.stderr
    return m.group(1), out


def artifacts(state, flow_run_id: str) -> dict[str, dict]:
    arts = api(state, "/artifacts/filter",
               {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return {a["key"]: a for a in arts}


def check_sweep(state, flow_run_id: str, experiment: str, key: str, values: list) -> list[dict]:
    """The sweep's runs (one parent, one FINISHED trial per point) and its Prefect artifacts."""
    runs = [r for r in all_runs(state) if r["experiment"] == experiment
            and r["tags"].get("prefect.flow_run_id") == flow_run_id]
    parents = [r for r in runs if r["tags"].get("unmask.kind") == "sweep"]
    trials = [r for r in runs if r["tags"].get("unmask.kind") == "trial"]
    assert len(parents) == 1 and parents[0]["status"] == "FINISHED"
    assert sorted(json.loads(r["params"][f"point.{key}"]) for r in trials) == sorted(values)
    assert all(r["tags"]["mlflow.parentRunId"] == parents[0]["id"] for r in trials)
    assert all(r["status"] == "FINISHED" for r in trials)
    arts = artifacts(state, flow_run_id)
    axis = experiment.split("/")[1]
    table = arts[f"ablation-{axis.replace('_', '-')}"]
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert len(rows) == len(values) and {r["status"] for r in rows} == {"completed"}
    links = {r["mlflow_run"] for r in rows}  # the MLflow UI page of each trial
    assert {link.split("/runs/")[-1] for link in links} == {t["id"] for t in trials}
    assert all(link.startswith(f"{state.mlflow_url}/#/experiments/") for link in links)
    assert "best point" in arts[f"ablation-{axis.replace('_', '-')}-summary"]["data"]
    return trials


def test_up_serves_the_projects_store(stack, env, project):
    state, _ = stack
    assert set(state.services) == {"prefect", "mlflow", "worker"}
    assert all(procs.is_running(s) for s in state.services.values())
    assert api(state, "/health") is True
    assert f'active = "{PROFILE}"' in (Path(env["PREFECT_HOME"]) / "profiles.toml").read_text()
    names = {d["name"] for d in api(state, "/deployments/filter", {})}
    assert {"nfe", "temperature", "cfg", "cfg_interval", "sampler", "top_p", "schedule",
            "weighting", "t_min", "default"} <= names
    # the pipeline's runs, logged to mlruns/ by `dvc repro` before the server started
    pipeline = {r["name"]: r for r in all_runs(state) if r["experiment"] == "default"}
    assert {"train", "sample", "evaluate"} <= set(pipeline), sorted(pipeline)
    assert pipeline["evaluate"]["status"] == "FINISHED"
    assert json.loads((project / "mlruns/server.json").read_text())["url"] == state.mlflow_url


def test_nfe_sweep_on_the_pipelines_checkpoint(stack, env, project, home):
    state, _ = stack
    # From another directory, no PREFECT_API_URL, no workdir: the deployment's defaults.
    flow_run_id, out = run_deployment("ablations/nfe", {"values": [2, 4]}, env, home)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert api(state, f"/flow_runs/{flow_run_id}")["state"]["type"] == "COMPLETED"
    trials = check_sweep(state, flow_run_id, "ablations/nfe", "sample.steps", [2, 4])
    for r in trials:
        primary = r["tags"]["unmask.primary_metric"]
        assert primary == ("fid" if fid_available()[0] else "hist_tv")
        assert {primary, "nfe", "seconds_per_sample", "hist_tv"} <= set(r["metrics"])
        assert r["params"]["tokenizer.path"] == "models/tokenizer.pt"  # the pipeline's own
        assert r["params"]["checkpoint"] == str(project / "models/model.pt")
    tasks = api(state, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    assert {t["name"] for t in tasks} == {"steps=2", "steps=4"}


def test_t_min_trains_through_ray_train_inside_tune(stack, env, home):
    state, _ = stack
    flow_run_id, out = run_deployment(
        "ablations/t_min", {"values": [0.0, 0.2], "overrides": ["train.steps=4"],
                            "metric": "stats"}, env, home)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert api(state, f"/flow_runs/{flow_run_id}")["state"]["type"] == "COMPLETED"
    trials = check_sweep(state, flow_run_id, "ablations/t_min", "emigm.t_min", [0.0, 0.2])
    t_max = sorted(float(r["params"]["train.t_max"]) for r in trials)
    assert t_max == pytest.approx([0.8, 1.0])  # eMIGM t_min = 0.2 ↔ t ∈ [0, 0.8] here
    for r in trials:
        assert r["metrics"]["train_steps"] == 4 and "nelbo_bpt" in r["metrics"]


def test_failing_point_fails_its_task_and_run_only(stack, env, home):
    state, _ = stack
    flow_run_id, out = run_deployment(
        "ablations/sampler", {"values": ["mdm", "bogus"], "metric": "stats"}, env, home)
    assert out.returncode != 0
    assert api(state, f"/flow_runs/{flow_run_id}")["state"]["type"] == "FAILED"
    tasks = api(state, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    assert {t["name"]: t["state"]["type"] for t in tasks} == {
        "method=mdm": "COMPLETED", "method=bogus": "FAILED"}
    runs = [r for r in all_runs(state) if r["tags"].get("prefect.flow_run_id") == flow_run_id]
    by = {r["params"].get("point.sample.method"): r for r in runs}
    assert by["mdm"]["status"] == "FINISHED" and by["bogus"]["status"] == "FAILED"
    assert "bogus" in by["bogus"]["tags"]["unmask.error"]
    assert by[None]["status"] == "FAILED"  # the sweep's parent run
    md = artifacts(state, flow_run_id)["ablation-sampler-summary"]["data"]
    assert "1 failed" in md and "method=bogus" in md


def test_down_leaves_nothing(stack, env, project):
    state, watcher = stack
    recorded = list(state.services.values())
    out, secs = cli([str(BIN / "unmask"), "stack", "down", "--grace", "5"], env, project)
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
    assert PROFILE not in (Path(env["PREFECT_HOME"]) / "profiles.toml").read_text()
    # clients are back on the sqlite file, which holds everything the server wrote
    assert not (project / "mlruns/server.json").exists()
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{project / 'mlruns/mlflow.db'}")
    names = {e.name for e in c.search_experiments()}
    assert {"default", "ablations/nfe", "ablations/t_min", "ablations/sampler"} <= names
