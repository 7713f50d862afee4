"""Per-trial orchestration overhead (Prefect + Ray Tune + MLflow) as a ratio to the trial's
own compute, on the NFE ablation of a small sandbox project.

Three measurements of the same grid points (``sample.steps`` = --steps):

1. *compute*: :func:`unmask.orchestration.evaluation.evaluate_checkpoint` called in this process
   for each point (after one warm-up call) — sampling + scoring, nothing else;
2. *Ray Tune + MLflow*: the library sweep (:class:`~unmask.orchestration.ablation.Ablation`,
   ``force``) logging to the stack's MLflow server: each trial's wall time (Tune start → end)
   and the sweep's fixed cost (Ray start-up, planning, parent run, table);
3. *Prefect + Ray Tune + MLflow*: ``prefect deployment run ablations/nfe --watch`` against the
   stack (``unmask stack up`` on free ports, stopped at the end): each trial task's duration
   (from the Prefect API) and the flow run's fixed cost (worker pick-up, flow-run process,
   Ray start-up), plus the wall time seen by the CLI.

Ratios: per-trial overhead = (trial wall − compute) / compute, fixed overhead = (sweep wall −
Σ trial walls) / Σ compute, total = (sweep wall − Σ compute) / Σ compute.

    .venv/bin/python benchmarks/orchestration_overhead.py [--steps 4 8 16 32] [--n-per-class 4]
        [--metric auto|stats] [--no-prefect] [--workdir DIR]
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


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _api(url: str, body: dict | None = None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def measure_compute(project: Path, steps: list[int], n_per_class: int, metric: str) -> dict:
    import torch

    from unmask.config import load_params
    from unmask.orchestration.ablation import Ablation, AblationRequest
    from unmask.orchestration.evaluation import evaluate_checkpoint

    ab = Ablation(AblationRequest(axis="nfe", values=steps, workdir=str(project),
                                  n_per_class=n_per_class, metric=metric))
    planned = ab.plan()
    # A trial's Ray worker runs with OMP_NUM_THREADS = its CPUs: measure with as many threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(ab.settings.ray.cpus_per_trial)))
    out = {}
    for i, pp in enumerate([planned[0], *planned]):  # the first call warms caches up
        params = load_params(ab.params_path, pp.spec.overrides)
        t = time.perf_counter()
        evaluate_checkpoint(ab.checkpoint, params, ab.settings.eval,
                            Path(tempfile.mkdtemp()), ab.tokens_dir)
        if i:
            out[pp.point.values["sample.steps"]] = time.perf_counter() - t
    torch.set_num_threads(threads)
    return out


def measure_library(project: Path, steps: list[int], n_per_class: int, metric: str) -> dict:
    from unmask.orchestration.ablation import Ablation, AblationRequest
    from unmask.orchestration.tune_grid import TrialBoard

    board = TrialBoard()
    ab = Ablation(AblationRequest(axis="nfe", values=steps, workdir=str(project), force=True,
                                  n_per_class=n_per_class, metric=metric))
    t = time.perf_counter()
    summary = ab.run(board)
    wall = time.perf_counter() - t
    assert not summary.failed, summary.failed
    trials = {ab.points[i].values["sample.steps"]: board.ended_at[i] - board.started_at[i]
              for i in board.ended_at}
    return {"wall": wall, "trials": trials}


def measure_prefect(project: Path, state, steps: list[int], n_per_class: int, metric: str,
                    env: dict) -> dict:
    args = [str(BIN / "prefect"), "deployment", "run", "ablations/nfe", "--watch",
            "--param", f"values={json.dumps(steps)}", "--param", f"workdir={project}",
            "--param", f"n_per_class={n_per_class}", "--param", f"metric={metric}",
            "--param", "force=true"]
    t = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600)
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
    created = _ts(run["created"]) if run.get("created") else _ts(run["start_time"])
    return {"wall": _ts(run["end_time"]) - created, "run": run["total_run_time"],
            "cli": cli_wall, "trials": trials}


def report(name: str, compute: dict, res: dict) -> None:
    per = [(res["trials"][k] - c) / c for k, c in compute.items() if k in res["trials"]]
    total_c, total_t = sum(compute.values()), sum(res["trials"].values())
    print(f"\n{name}")
    for k, c in compute.items():
        t = res["trials"].get(k, float("nan"))
        print(f"  steps={k:<5d} compute {c:7.2f}s  trial wall {t:7.2f}s  overhead ratio "
              f"{(t - c) / c:6.2f}")
    print(f"  per-trial overhead ratio (mean)          {statistics.mean(per):6.2f}")
    print(f"  sweep wall {res['wall']:.1f}s: fixed cost {res['wall'] - total_t:.1f}s "
          f"(ratio to grid compute {(res['wall'] - total_t) / total_c:.2f})")
    print(f"  total overhead ratio (wall − compute) / compute "
          f"{(res['wall'] - total_c) / total_c:6.2f}")
    if "cli" in res:
        print(f"  `prefect deployment run --watch` wall {res['cli']:.1f}s "
              f"(flow run {res['run']:.1f}s running)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--n-per-class", type=int, default=2)
    ap.add_argument("--metric", default="auto", choices=["auto", "fid", "stats"])
    ap.add_argument("--no-prefect", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    for k, v in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                 "RAY_USAGE_STATS_ENABLED": "0", "DVC_NO_ANALYTICS": "1"}.items():
        os.environ[k] = v
    from unmask.orchestration import stack
    from unmask.orchestration.sandbox import make_project

    root = args.workdir or Path(tempfile.mkdtemp(prefix="unmask-overhead-"))
    project = root / "project"
    if not (project / "models/model.pt").exists():
        make_project(project)
    print(f"project {project}; grid sample.steps={args.steps}, "
          f"{args.n_per_class} samples/class, metric {args.metric}")
    compute = measure_compute(project, args.steps, args.n_per_class, args.metric)

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL",
                                                            "MLFLOW_TRACKING_URI")}
    env["PREFECT_HOME"] = str(root / "user-prefect")
    state = stack.up(stack.StackConfig(repo=REPO, state_dir=root / "state", prefect_port=0,
                                       mlflow_port=0, set_profile=False), echo=lambda _: None)
    try:
        os.environ["MLFLOW_TRACKING_URI"] = state.mlflow_url
        lib = measure_library(project, args.steps, args.n_per_class, args.metric)
        pre = None
        if not args.no_prefect:
            env.update(state.client_env)
            pre = measure_prefect(project, state, args.steps, args.n_per_class, args.metric,
                                  env)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        stack.down(root / "state", echo=lambda _: None, grace=5)
    report("Ray Tune + MLflow (library sweep)", compute, lib)
    if pre is not None:
        report("Prefect + Ray Tune + MLflow (deployment run)", compute, pre)


if __name__ == "__main__":
    main()
