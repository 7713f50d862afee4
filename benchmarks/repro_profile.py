"""Per-stage profile of the default pipeline (`make repro` = `dvc repro`) on a fresh clone.

Clones this repository into a scratch folder (its own DVC cache, MLflow store and a fresh
``UNMASK_CACHE_DIR``, so the Inception weights conversion and the reference statistics are
computed as on a first run), then runs the stages one at a time in ``dvc.yaml`` order with
``dvc repro --single-item <stage>`` and records each stage's wall time and its CPU time
(user + sys of the child processes, ``getrusage(RUSAGE_CHILDREN)``). CPU time is what the
stage costs whatever else runs on the machine; wall time ÷ CPU time shows how much of the
machine it got (or how parallel it ran). Also records ``dvc repro``'s own start-up (a no-op
repro at the end) and, when the evaluate stage writes them, its per-part timings.

    .venv/bin/python benchmarks/repro_profile.py [--dir /tmp/unmask-profile] [--keep]
        [--threads N]   # UNMASK_THREADS for the stages (default: unset, the stages' default)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {"DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "RAY_USAGE_STATS_ENABLED": "0",
       "HF_HUB_OFFLINE": "1"}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s, output tail) of one command; a failure raises with its output."""
    c0, t0 = _cpu(), time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    if p.returncode:
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {p.returncode}):\n"
                         f"{(p.stdout + p.stderr)[-3000:]}")
    return wall, cpu, (p.stdout + p.stderr)[-2000:]


def run(args: argparse.Namespace) -> dict:
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="unmask-profile-"))
    repo = work / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, **ENV, "PYTHONPATH": str(repo / "src"),
           "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
           "UNMASK_CACHE_DIR": str(work / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    if args.threads:
        env["UNMASK_THREADS"] = str(args.threads)
    stages = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=repo, env=env,
                            capture_output=True, text=True, check=True).stdout.split()
    print(f"repro profile: fresh clone at {repo}, stages {', '.join(stages)}; "
          f"UNMASK_THREADS={env.get('UNMASK_THREADS', '(unset)')}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f} at start", flush=True)
    rows = []
    for stage in stages:
        wall, cpu, _ = timed(["dvc", "repro", "--single-item", stage], repo, env)
        rows.append(dict(stage=stage, wall_s=wall, cpu_s=cpu))
        print(f"  {stage:12s} wall {wall:7.1f} s  CPU {cpu:7.1f} s  CPU/wall {cpu / wall:4.2f}"
              f"  (load {os.getloadavg()[0]:.1f})", flush=True)
    wall, cpu, _ = timed(["dvc", "repro"], repo, env)
    rows.append(dict(stage="(no-op repro)", wall_s=wall, cpu_s=cpu))
    total_w, total_c = sum(r["wall_s"] for r in rows), sum(r["cpu_s"] for r in rows)
    print(f"  {'(no-op)':12s} wall {wall:7.1f} s  CPU {cpu:7.1f} s")
    print(f"  total        wall {total_w:7.1f} s = {total_w / 60:.1f} min, CPU {total_c:7.1f} s "
          f"= {total_c / 60:.1f} min (goal: make repro <= 8 min wall on 2 free cores)")
    for name in ("evaluate_timings.json", "timings.json"):
        for f in sorted((repo / "metrics").glob(name)):
            print(f"  {f.relative_to(repo)}: {f.read_text()[:600]}")
    out = dict(stages=rows, total_wall_s=total_w, total_cpu_s=total_c,
               threads=env.get("UNMASK_THREADS"))
    (work / "profile.json").write_text(json.dumps(out, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the clone and its outputs")
    ap.add_argument("--threads", type=int, default=0)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    main()
