"""Run every benchmark and print each measured ratio next to its goal.

    .venv/bin/python benchmarks/run_all.py [--quick] [--skip NAME ...] [--out benchmarks/results]
        [--mlflow [URI]]

Runs, in one process, ``peers.py`` (samplers vs flow_matching / diffusers),
``sampler_overhead.py`` (sample time ÷ the network's own forward time, per method),
``train_throughput.py`` (our step vs a bare loop, shard loader, GPU/MFU),
``scaling.py`` (sampling vs L and steps, training vs model size), ``sampling_nfe.py``
(NFE and cache speed-ups of every sampler), ``loader_scaling.py`` (shard writer and loader
at ImageNet size vs di-546m's consumption) and ``orchestration_overhead.py`` (no-op
``dvc repro``, per-trial Prefect / Ray / MLflow overhead); ``--quick`` passes each its short
mode. Prints a summary table (measured, goal, ok) and writes it, with the machine
description and every benchmark's full output, to ``<out>/latest.md`` (plus
``<out>/latest.json``). A benchmark that fails is reported as such; the others still run.
``--mlflow`` also logs the summary and the scaling tables to MLflow
(:func:`unmask.reporting.benchmarks.log_benchmarks`), which the report's Performance section
reads.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
NAMES = ("peers", "sampler_overhead", "train_throughput", "scaling", "sampling_nfe",
         "loader_scaling", "orchestration_overhead")


class _Tee(io.TextIOBase):
    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


def machine() -> dict:
    import torch

    model = platform.processor() or "?"
    with contextlib.suppress(Exception):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                     if line.startswith("Model name"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": model, "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
            "torch": torch.__version__, "python": platform.python_version(), "gpu": gpu,
            "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M")}


def _ok(value: float | None, goal: float, higher: bool) -> str:
    if value is None:
        return "n/a"
    return "ok" if (value >= goal if higher else value <= goal) else "MISSED"


def summarize(results: dict) -> list[tuple[str, str, str, str]]:
    """(what, measured, goal, ok) rows from the benchmarks' return values."""
    rows: list[tuple[str, str, str, str]] = []
    for r in results.get("peers") or []:
        if "ratio" in r:
            work = (f" [rows evaluated ours {r['rows_ours']:,} / peer {r['rows_peer']:,}]"
                    if r.get("rows_ours") is not None else "")
            rows.append((f"peers: {r['name']} (peer/ours time){work}", f"{r['ratio']:.2f}x",
                         f">= {r['goal']}x", _ok(r["ratio"], r["goal"], True)))
        elif "speedup_over_ideal" in r:
            rows.append((f"peers: {r['name']}, speed-up / ideal (ideal = rows evaluated "
                         f"uncached / cached = {r['ideal']:.2f}x)",
                         f"{r['speedup_over_ideal']:.2f} ({r['speedup']:.2f}x)",
                         f">= {r['goal_over_ideal']}",
                         _ok(r["speedup_over_ideal"], r["goal_over_ideal"], True)))
        elif r.get("name") == "agreement":
            rows.append(("peers: euler TV to target ours / flow_matching",
                         f"{r['euler_tv_ours']:.4f} / {r['euler_tv_peer']:.4f}",
                         f"<= noise band {r['band']:.4f}",
                         _ok(max(r["euler_tv_ours"], r["euler_tv_peer"]), r["band"], False)))
            # The threshold is the printed goal: the 99th percentile of the TV between two
            # independent sets of exact samples of the same size (peers.py).
            rows.append((f"peers: maskgit two-sample TV ours vs aMUSEd (ours vs ours "
                         f"{r['maskgit_noise_tv']:.4f})", f"{r['maskgit_two_sample_tv']:.4f}",
                         f"<= two-sample noise band {r['band_two_sample']:.4f}",
                         _ok(r["maskgit_two_sample_tv"], r["band_two_sample"], False)))
    so = results.get("sampler_overhead")
    if so:
        for model in dict.fromkeys(r["model"] for r in so):
            mine = [r for r in so if r["model"] == model]
            worst = max(mine, key=lambda r: r["ratio"])
            rows.append((f"sampler overhead: sample time / network forward time, {model} "
                         f"model (L={worst['L']}), worst of {len(mine)} (method x ETM/ITM x "
                         f"CFG): {worst['mode'][:3].upper()} {worst['method']} cfg "
                         f"{worst['cfg_scale']:g}", f"{worst['ratio']:.3f}",
                         f"<= {worst['goal']}", _ok(worst["ratio"], worst["goal"], False)))
    ls = results.get("loader_scaling")
    if ls:
        for r in ls["table"]:
            if r["mfu"] == 0.45:
                rows.append((f"loader at ImageNet size ({ls['rows']:,} rows x "
                             f"{ls['seq_len']}, {r['reader']}) / di-546m on an H100 at 45% "
                             f"MFU, L={r['model_L']} (tokens/s)", f"{r['ratio']:,.0f}x",
                             f">= {ls['goal']:g}x", _ok(r["ratio"], ls["goal"], True)))
    t = results.get("train_throughput")
    if t:
        rows.append((f"train: our step / bare loop tokens/s ({t['preset']}, B={t['batch']}, "
                     f"L={t['seq_len']})", f"{t['ratio']:.3f}", f">= {t['goal']}",
                     _ok(t["ratio"], t["goal"], True)))
        extra = sum(t["extras_ms"].values()) / t["bare_step_ms"]
        rows.append(("train: framework extras timed alone / bare step", f"{100 * extra:.1f}%",
                     "<= 5%", _ok(extra, 0.05, False)))
        for key in ("memmap", "in_memory"):
            v = t["loader"][f"{key}_ratio"]
            rows.append((f"train: loader ({key}) rows/s / step consumption", f"{v:,.0f}x",
                         f">= {t['loader_goal']}x", _ok(v, t["loader_goal"], True)))
        g = t.get("gpu")
        rows.append(("train: MFU at di-546m on GPU",
                     "GPU: not available on this machine" if g is None
                     else (f"{100 * g['mfu']:.1f}%" if g["mfu"] is not None else "unavailable"),
                     ">= 45% (H100)",
                     "n/a" if g is None or g["mfu"] is None else _ok(g["mfu"], 0.45, True)))
    s = results.get("scaling")
    if s:
        itm = [r for r in s if r["table"] == "sampling_vs_steps" and r["mode"] == "implicit"]
        if itm:
            big = max(itm, key=lambda r: r["steps"])
            rows.append((f"scaling: ITM cache speed-up / ideal at steps={big['steps']}, "
                         f"L={big['L']} (ideal {big['ideal_speedup']:.2f}x)",
                         f"{big['speedup_over_ideal']:.2f} ({big['speedup']:.2f}x)", ">= 0.9",
                         _ok(big["speedup_over_ideal"], 0.9, True)))
    o = results.get("orchestration_overhead")
    if o:
        d = o["dvc"]
        rows.append(("orchestration: no-op dvc repro", f"{d['noop_repro_s']:.2f} s", "<= 3 s",
                     _ok(d["noop_repro_s"], 3.0, False)))
        sw = o.get("prefect_ray_mlflow") or {}
        if sw.get("wall_over_compute") is not None:
            rows.append((f"orchestration: ablations/nfe sweep wall / its trials' compute "
                         f"({sw['wall_s']:.0f} s / {sw['compute_s']:.0f} s, "
                         f"{sw['n_trials']} trials)", f"{sw['wall_over_compute']:.3f}",
                         "<= 1.10", _ok(sw["wall_over_compute"], 1.10, False)))
        for key, name in (("ray_mlflow", "Ray Tune + MLflow"),
                          ("prefect_ray_mlflow", "Prefect + Ray Tune + MLflow")):
            if key in o:
                v = o[key]["per_trial_overhead_s"]
                rows.append((f"orchestration: per-trial overhead, {name} (trial compute "
                             f"{o[key]['compute_s'] / max(o[key]['n_trials'], 1):.1f} s avg)",
                             f"{v:.2f} s", "<= 5 s", _ok(v, 5.0, False)))
                if o[key].get("warm_trial_overhead_s") is not None:
                    rows.append((f"orchestration: {name}, first trial (cold worker) / later "
                                 f"trials (reused worker, median)",
                                 f"{o[key]['cold_trial_overhead_s']:.2f} s / "
                                 f"{o[key]['warm_trial_overhead_s']:.2f} s",
                                 "later trials <= 5 s",
                                 _ok(o[key]["warm_trial_overhead_s"], 5.0, False)))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every benchmark's short mode")
    ap.add_argument("--skip", nargs="*", default=[], choices=NAMES)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--mlflow", metavar="URI", nargs="?", const="", default=None,
                    help="also log the results to MLflow (this store, or without URI the "
                         "project's, as `dvc repro` uses): the report's Performance section "
                         "shows the newest run")
    args = ap.parse_args(argv)
    for k, v in {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                 "RAY_USAGE_STATS_ENABLED": "0", "DVC_NO_ANALYTICS": "1"}.items():
        os.environ.setdefault(k, v)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, load {info['load_avg_1m']:.1f}, "
          f"torch {info['torch']}, GPU {info['gpu'] or 'none'}")
    flag = ["--quick"] if args.quick else []
    results, logs, errors, secs = {}, {}, {}, {}
    for name in NAMES:
        if name in args.skip:
            continue
        print(f"\n===== {name} {' '.join(flag)} =====", flush=True)
        buf = io.StringIO()
        t0 = time.perf_counter()
        try:
            mod = __import__(name)
            with contextlib.redirect_stdout(_Tee(sys.stdout, buf)):
                results[name] = mod.main(flag)
        except Exception:  # a broken benchmark must not hide the others' numbers
            errors[name] = traceback.format_exc()
            print(errors[name])
        secs[name] = time.perf_counter() - t0
        logs[name] = buf.getvalue()

    rows = summarize(results)
    w = max((len(r[0]) for r in rows), default=10)
    print("\n===== summary =====")
    for what, val, goal, ok in rows:
        print(f"  {what:{w}s}  {val:>24s}  goal {goal:22s} {ok}")
    for name in errors:
        print(f"  {name}: FAILED (see above)")

    args.out.mkdir(parents=True, exist_ok=True)
    md = [f"# Benchmarks ({'quick' if args.quick else 'full'} run, {info['date_utc']} UTC)", "",
          f"Machine: {info['cpu']}, {info['cores']} cores (shared, load average "
          f"{info['load_avg_1m']:.1f} at start), torch {info['torch']}, Python "
          f"{info['python']}, GPU: {info['gpu'] or 'none'}. Command: "
          f"`python benchmarks/run_all.py{' --quick' if args.quick else ''}`.", "",
          "| measurement | measured | goal | |", "|---|---|---|---|"]
    md += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    md += [f"| {n} | FAILED | | |" for n in errors]
    for name, log in logs.items():
        md += ["", f"## {name} ({secs[name]:.0f} s)", "", "```", log.rstrip(), "```"]
        if name in errors:
            md += ["", "```", errors[name].rstrip(), "```"]
    (args.out / "latest.md").write_text("\n".join(md) + "\n")
    (args.out / "latest.json").write_text(json.dumps(
        {"machine": info, "quick": args.quick, "summary": rows, "results": results,
         "errors": errors, "seconds": secs}, indent=1, default=str))
    print(f"\nwrote {args.out / 'latest.md'}")
    if args.mlflow is not None:
        from unmask.reporting.benchmarks import log_benchmarks
        from unmask.tracking import tracking_uri

        args.mlflow = args.mlflow or tracking_uri()
        tables = (results.get("sampler_overhead") or []) + (results.get("scaling") or [])
        run_id = log_benchmarks(args.mlflow, rows, tables, info, quick=args.quick)
        print(f"logged to MLflow {args.mlflow}: run {run_id} (experiment 'benchmarks')")


if __name__ == "__main__":
    main()
