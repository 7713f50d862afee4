"""A sweep's whole cost: wall time of ``prefect deployment run ablations/nfe`` vs the sum of its
trials' own compute, on the real default project (after ``make repro``), plus per-trial overhead.

Issue 20.3's goal: the default ``ablations/nfe`` grid on the real default, run with
``prefect deployment run``, has wall time <= 1.10 x the sum of its trials' compute. Here:

- the project is ``--project`` (default: this checkout; it needs the ``train`` stage's outputs:
  ``make repro`` or ``dvc repro train``), or with ``--tiny`` a git clone of this checkout shrunk by
  :data:`unmask.orchestration.tiny.TINY` after ``dvc repro train`` (a smoke run);
- ``unmask stack up`` in the project (free ports; its MLflow server serves the project's store,
  so the benchmark's runs land with the pipeline's), then ``prefect deployment run
  ablations/nfe --watch --param force=true`` (the axis' default grid unless ``--values``);
- *compute* of a trial = its ``compute_seconds`` metric (sampling + scoring, measured inside the
  trial by :func:`unmask.orchestration.trials.run_trial`), read back through MLflow;
- *wall* = from the CLI call to the flow run's end (what the user waits for), also the flow
  run's own running time; per-trial overhead = the trial task's duration − its compute.

Before these: the wall time of a no-op ``dvc repro`` (goal <= 3 s) in a fresh two-stage git + DVC
project, and of ``dvc status`` on this checkout's default pipeline (read-only).

    .venv/bin/python benchmarks/orchestration_overhead.py [--project DIR | --tiny]
        [--values 4 8 16] [--n-per-class N] [--metric auto|fid|stats] [--workdir DIR]
        [--quick] [--dvc-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOAL_DVC_S, GOAL_TRIAL_S, GOAL_SWEEP_RATIO = 3.0, 5.0, 1.10


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _api(url: str, body: dict | None = None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def tiny_project(root: Path) -> Path:
    """A clone of this checkout shrunk by overrides, after ``dvc repro train``."""
    from unmask.orchestration.tiny import clone_project

    project = root / "project"
    if not (project / "models/model.pt").exists():
        if not project.exists():
            clone_project(project)
        out = subprocess.run([str(BIN / "dvc"), "repro", "train"], cwd=project,
                             capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            raise RuntimeError(f"dvc repro train failed in {project}: {out.stderr[-2000:]}")
    return project


def measure_prefect(project: Path, state, values: list[int] | None,
                    n_per_class: int | None, metric: str | None, env: dict) -> dict:
    """Run the deployment, then read the flow run, its trial tasks (Prefect API) and the trials'
    ``compute_seconds`` (MLflow, through the stack's server)."""
    from mlflow.tracking import MlflowClient

    args = [str(BIN / "prefect"), "deployment", "run", "ablations/nfe", "--watch",
            "--watch-timeout", "7200", "--param", "force=true"]
    for k, v in (("values", values), ("n_per_class", n_per_class), ("metric", metric)):
        if v is not None:
            args += ["--param", f"{k}={json.dumps(v)}"]
    t = time.perf_counter()
    out = subprocess.run(args, env=env, cwd=project.parent, capture_output=True, text=True,
                         timeout=7300)
    cli_wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-3000:] + out.stderr[-3000:])
    fid = re.search(r"UUID: ([0-9a-f-]{36})", out.stdout).group(1)
    run = _api(f"{state.api_url}/flow_runs/{fid}")
    tasks = _api(f"{state.api_url}/task_runs/filter",
                 {"flow_runs": {"id": {"any_": [fid]}}})
    trials = {}
    for task in tasks:
        m = re.match(r"steps=(\d+)$", task["name"])
        if m:
            trials[int(m.group(1))] = _ts(task["end_time"]) - _ts(task["start_time"])
    c = MlflowClient(state.mlflow_url)
    exp = c.get_experiment_by_name("ablations/nfe")
    compute = {}
    for r in c.search_runs([exp.experiment_id], filter_string=(
            f"tags.`prefect.flow_run_id` = '{fid}' and tags.`unmask.kind` = 'trial'")):
        compute[int(r.data.params["point.sample.steps"])] = r.data.metrics["compute_seconds"]
    return {"cli": cli_wall, "run": run["total_run_time"],
            "flow_wall": _ts(run["end_time"]) - _ts(run["start_time"]),
            "trials": trials, "compute": dict(sorted(compute.items()))}


def _dvc(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    out = subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600)
    return time.perf_counter() - t, out


def measure_dvc(root: Path) -> dict:
    """Wall time of a no-op ``dvc repro`` (everything up to date) in a fresh git + DVC
    project of two stages, and of ``dvc status`` (the read-only check a no-op repro makes) on
    this checkout's default pipeline."""
    proj = root / "dvc-noop"
    proj.mkdir(parents=True, exist_ok=True)
    env_cmds = [["git", "init", "-q"], ["git", "config", "user.email", "b@example.com"],
                ["git", "config", "user.name", "bench"]]
    for cmd in env_cmds:
        subprocess.run(cmd, cwd=proj, check=True, capture_output=True)
    (proj / "params.yaml").write_text("n: 1000\n")
    (proj / "dvc.yaml").write_text(
        "stages:\n"
        "  make:\n"
        "    cmd: python -c \"import yaml; n = yaml.safe_load(open('params.yaml'))['n'];"
        " open('a.txt', 'w').write('x' * n)\"\n"
        "    params: [n]\n    outs: [a.txt]\n"
        "  copy:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n")
    _dvc(["init", "-q"], proj)
    first, out = _dvc(["repro"], proj)
    if out.returncode != 0:
        raise RuntimeError(f"dvc repro failed: {out.stderr[-2000:]}")
    noop = [_dvc(["repro"], proj)[0] for _ in range(3)]
    status_s, st = _dvc(["status"], REPO)
    return {"first_repro_s": first, "noop_repro_s": statistics.median(noop),
            "status_default_s": status_s if st.returncode == 0 else None,
            "status_default_error": None if st.returncode == 0
            else (st.stderr.strip().splitlines() or ["?"])[0][:200]}


def report(res: dict) -> dict:
    """Print the sweep's numbers (per trial and in total) and return them."""
    compute, trials = res["compute"], res["trials"]
    total_c = sum(compute.values())
    per_s = [trials[k] - c for k, c in compute.items() if k in trials]
    print("\nPrefect + Ray Tune + MLflow: `prefect deployment run ablations/nfe --watch`")
    for k, c in compute.items():
        t = trials.get(k, float("nan"))
        print(f"  steps={k:<5d} compute {c:7.2f}s  trial task {t:7.2f}s  overhead {t - c:6.2f}s")
    mean_s = statistics.mean(per_s)
    cold, warm = per_s[0], per_s[1:]
    print(f"  per-trial overhead (mean) {mean_s:.2f}s (goal <= {GOAL_TRIAL_S:.0f} s: "
          f"{'ok' if mean_s <= GOAL_TRIAL_S else 'ABOVE GOAL'})"
          + (f"; first trial {cold:.2f}s, later trials median {statistics.median(warm):.2f}s"
             if warm else ""))
    ratio = res["cli"] / total_c
    print(f"  sum of the trials' compute      {total_c:8.1f}s  ({len(compute)} trials)")
    print(f"  sweep wall (CLI call → flow end) {res['cli']:8.1f}s  (flow run itself "
          f"{res['flow_wall']:.1f}s)")
    print(f"  wall / compute = {ratio:.3f}  (goal <= {GOAL_SWEEP_RATIO:.2f}: "
          f"{'ok' if ratio <= GOAL_SWEEP_RATIO else 'ABOVE GOAL'}); fixed cost "
          f"{res['cli'] - sum(trials.values()):.1f}s outside the trial tasks")
    return {"per_trial_overhead_s": mean_s, "cold_trial_overhead_s": cold,
            "warm_trial_overhead_s": statistics.median(warm) if warm else None,
            "compute_s": total_c, "wall_s": res["cli"], "flow_wall_s": res["flow_wall"],
            "wall_over_compute": ratio, "n_trials": len(compute),
            "per_trial": {str(k): {"compute_s": c, "task_s": trials.get(k)}
                          for k, c in compute.items()}}


def report_dvc(d: dict) -> None:
    ok = "ok" if d["noop_repro_s"] <= GOAL_DVC_S else "ABOVE GOAL"
    print(f"\ndvc: no-op `dvc repro` (2-stage project, median of 3) {d['noop_repro_s']:.2f}s "
          f"(goal <= {GOAL_DVC_S:.0f} s: {ok}); first repro {d['first_repro_s']:.2f}s")
    if d["status_default_s"] is not None:
        print(f"dvc: `dvc status` of this checkout's default pipeline "
              f"{d['status_default_s']:.2f}s (what a no-op repro checks)")
    else:
        print(f"dvc: `dvc status` of the default pipeline failed: {d['status_default_error']}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--project", type=Path, default=REPO,
                       help="project after `make repro` (default: this checkout)")
    where.add_argument("--tiny", action="store_true",
                       help="a clone of this checkout shrunk by overrides (smoke run)")
    ap.add_argument("--values", type=int, nargs="+", default=None,
                    help="sample.steps grid (default: the axis' grid in flows/ablations.yaml)")
    ap.add_argument("--n-per-class", type=int, default=None)
    ap.add_argument("--metric", default=None, choices=["auto", "fid", "stats"])
    ap.add_argument("--workdir", type=Path, default=None, help="stack state, tiny project")
    ap.add_argument("--dvc-only", action="store_true", help="only the no-op dvc repro timing")
    ap.add_argument("--quick", action="store_true", help="--tiny --values 4 8")
    args = ap.parse_args(argv)
    if args.quick:
        args.tiny, args.values = True, args.values or [4, 8]
    for k, v in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                 "RAY_USAGE_STATS_ENABLED": "0", "DVC_NO_ANALYTICS": "1"}.items():
        os.environ[k] = v
    from unmask.orchestration import stack
    from unmask.orchestration.ablation import Ablation, AblationRequest

    root = args.workdir or Path(tempfile.mkdtemp(prefix="unmask-overhead-"))
    results: dict = {"dvc": measure_dvc(root)}
    report_dvc(results["dvc"])
    if args.dvc_only:
        return results
    project = tiny_project(root) if args.tiny else args.project.resolve()
    # One error before anything starts when the pipeline's outputs are missing.
    planned = Ablation(AblationRequest(axis="nfe", workdir=str(project), values=args.values,
                                       force=True)).plan()
    grid = [pp.point.values["sample.steps"] for pp in planned]
    print(f"\nproject {project}; grid sample.steps={grid}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL",
                                                            "MLFLOW_TRACKING_URI")}
    env["PREFECT_HOME"] = str(root / "user-prefect")
    state = stack.up(stack.StackConfig(repo=project, state_dir=root / "state", prefect_port=0,
                                       mlflow_port=0, set_profile=False), echo=lambda _: None)
    try:
        env.update(state.client_env)
        res = measure_prefect(project, state, args.values, args.n_per_class, args.metric, env)
    finally:
        stack.down(root / "state", echo=lambda _: None, grace=5)
    results["prefect_ray_mlflow"] = report(res)
    results["load_average"] = os.getloadavg()
    return results


if __name__ == "__main__":
    main()
