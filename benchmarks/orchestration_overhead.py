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

Per-trial overhead = trial wall − compute (goal ≤ 5 s), also as a ratio to the compute; fixed
overhead = (sweep wall − Σ trial walls) / Σ compute, total = (sweep wall − Σ compute) / Σ compute.
Before these: the wall time of a no-op ``dvc repro`` (goal ≤ 3 s) in a fresh two-stage git + DVC
project, and of ``dvc status`` on this checkout's default pipeline (read-only).

    .venv/bin/python benchmarks/orchestration_overhead.py [--steps 4 8 16 32] [--n-per-class 4]
        [--metric auto|stats] [--no-prefect] [--workdir DIR] [--quick] [--dvc-only]
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
GOAL_DVC_S, GOAL_TRIAL_S = 3.0, 5.0


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


def report(name: str, compute: dict, res: dict) -> dict:
    per = [(res["trials"][k] - c) / c for k, c in compute.items() if k in res["trials"]]
    per_s = [res["trials"][k] - c for k, c in compute.items() if k in res["trials"]]
    total_c, total_t = sum(compute.values()), sum(res["trials"].values())
    print(f"\n{name}")
    for k, c in compute.items():
        t = res["trials"].get(k, float("nan"))
        print(f"  steps={k:<5d} compute {c:7.2f}s  trial wall {t:7.2f}s  overhead "
              f"{t - c:6.2f}s  ratio {(t - c) / c:6.2f}")
    mean_s = statistics.mean(per_s)
    print(f"  per-trial overhead (mean) {mean_s:6.2f}s  (goal <= {GOAL_TRIAL_S:.0f} s: "
          f"{'ok' if mean_s <= GOAL_TRIAL_S else 'ABOVE GOAL'}), ratio to the trial's "
          f"compute {statistics.mean(per):6.2f}")
    # Trials run in order on one reused worker process (Tune reuse_actors): the first pays
    # the process's cold start (imports, Inception weights), the others only the bookkeeping.
    cold, warm = per_s[0], per_s[1:]
    if warm:
        print(f"  of which: first trial (cold worker: imports, weights) {cold:5.2f}s; later "
              f"trials on the reused worker median {statistics.median(warm):5.2f}s "
              f"(max {max(warm):.2f}s)")
    print(f"  sweep wall {res['wall']:.1f}s: fixed cost {res['wall'] - total_t:.1f}s "
          f"(ratio to grid compute {(res['wall'] - total_t) / total_c:.2f})")
    print(f"  total overhead ratio (wall − compute) / compute "
          f"{(res['wall'] - total_c) / total_c:6.2f}")
    if "cli" in res:
        print(f"  `prefect deployment run --watch` wall {res['cli']:.1f}s "
              f"(flow run {res['run']:.1f}s running)")
    return {"per_trial_overhead_s": mean_s, "per_trial_ratio": statistics.mean(per),
            "cold_trial_overhead_s": cold,
            "warm_trial_overhead_s": statistics.median(warm) if warm else None,
            "fixed_s": res["wall"] - total_t, "compute_s": total_c, "wall_s": res["wall"],
            "n_trials": len(per_s)}


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
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--n-per-class", type=int, default=2)
    ap.add_argument("--metric", default="auto", choices=["auto", "fid", "stats"])
    ap.add_argument("--no-prefect", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--dvc-only", action="store_true", help="only the no-op dvc repro timing")
    ap.add_argument("--quick", action="store_true", help="grid steps 4 8, no Prefect run")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.no_prefect = [4, 8], True
    for k, v in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                 "RAY_USAGE_STATS_ENABLED": "0", "DVC_NO_ANALYTICS": "1"}.items():
        os.environ[k] = v
    from unmask.orchestration import stack
    from unmask.orchestration.sandbox import make_project

    root = args.workdir or Path(tempfile.mkdtemp(prefix="unmask-overhead-"))
    results: dict = {"dvc": measure_dvc(root)}
    report_dvc(results["dvc"])
    if args.dvc_only:
        return results
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
    results["ray_mlflow"] = report("Ray Tune + MLflow (library sweep)", compute, lib)
    if pre is not None:
        results["prefect_ray_mlflow"] = report("Prefect + Ray Tune + MLflow (deployment run)",
                                               compute, pre)
    return results


if __name__ == "__main__":
    main()
