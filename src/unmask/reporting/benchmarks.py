"""Benchmark results in MLflow and their section of the report.

``benchmarks/run_all.py --mlflow URI`` calls :func:`log_benchmarks`: one run in the
``benchmarks`` experiment, tagged ``unmask.benchmark=run_all`` (plus the device and commit),
holding ``benchmarks/results.json`` — the summary rows (measurement, measured, goal, verdict),
the tables of ``benchmarks/sampler_overhead.py`` and ``benchmarks/scaling.py`` and the machine.
:func:`performance_section` renders the newest such run: the goals table, then the sampler
overhead per method (sample time ÷ network forward time), sampling time vs sequence length,
the idle-step cache vs steps, and training step time vs model size.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from unmask.reporting.page import esc, frame_table
from unmask.reporting.runs import download_artifact, tag
from unmask.runtime import git_commit
from unmask.tracking import Tracker

__all__ = ["BENCHMARK_TAG", "BENCHMARK_EXPERIMENT", "ARTIFACT", "log_benchmarks",
           "performance_section"]

BENCHMARK_TAG = "unmask.benchmark"
BENCHMARK_EXPERIMENT = "benchmarks"
ARTIFACT = "benchmarks/results.json"

#: table (the rows' ``table`` key) → (heading, columns shown, their headers)
_SCALING = {
    "sampler_overhead": (
        "Sampler overhead: sample time ÷ the network's own forward time of the rows evaluated "
        "(goal ≤ 1.05)",
        ["model", "mode", "method", "cfg_scale", "batch", "L", "steps", "calls",
         "rows_evaluated", "total_s", "network_s", "ratio"],
        ["model", "timestep", "method", "CFG", "batch", "L", "steps", "network calls",
         "rows evaluated", "sample s", "network s", "ratio"]),
    "sampling_vs_length": (
        "Sampling time vs sequence length",
        ["L", "steps", "batch", "nfe", "s_per_sample", "ms_per_step"],
        ["L", "steps", "batch", "NFE", "s / sample", "ms / step"]),
    "sampling_vs_steps": (
        "Idle-step cache vs steps (speed-up over cache=False; ideal = rows evaluated "
        "uncached / cached)",
        ["mode", "L", "steps", "nfe", "nfe_mean", "s_per_sample", "uncached_s_per_sample",
         "speedup", "ideal_speedup", "speedup_over_ideal"],
        ["timestep", "L", "steps", "NFE (max)", "NFE (mean)", "s / sample",
         "uncached s / sample", "speed-up", "ideal", "speed-up / ideal"]),
    "train_vs_size": (
        "Training step vs model size",
        ["model", "params", "batch", "L", "s_per_step", "tokens_per_s", "model_gflops"],
        ["model", "parameters", "batch", "L", "s / step", "tokens / s", "model GFLOP/s"]),
}


def log_benchmarks(uri: str, summary: Sequence[Sequence[str]],
                   scaling: Sequence[Mapping[str, Any]] | None, machine: Mapping[str, Any],
                   *, quick: bool) -> str:
    """Log one ``run_all`` result to MLflow at ``uri``; returns the run id.

    Args:
        summary: rows (measurement, measured, goal, verdict) as ``run_all`` prints them.
        scaling: the rows of ``benchmarks/sampler_overhead.py`` and ``benchmarks/scaling.py``
            (each with a ``table`` key), or None.
        machine: CPU, cores, load, torch version, GPU (``run_all.machine()``).
        quick: whether the benchmarks ran in their short mode.
    """
    device = machine.get("gpu") or f"cpu ({machine.get('cpu', '?')}, {machine.get('cores')} cores)"
    tags = {BENCHMARK_TAG: "run_all", "unmask.kind": "benchmark", "unmask.device": device,
            "git_commit": git_commit()}
    with tempfile.TemporaryDirectory(prefix="unmask-bench-") as tmp:
        path = Path(tmp) / Path(ARTIFACT).name
        path.write_text(json.dumps({"summary": [list(r) for r in summary],
                                    "scaling": list(scaling or []), "machine": dict(machine),
                                    "quick": quick}, indent=1, default=str))
        with Tracker(uri).start_run(BENCHMARK_EXPERIMENT, "run_all" + (" --quick" * quick),
                                    params={"quick": quick, "machine": dict(machine)},
                                    tags=tags) as tr:
            tr.log_artifact(path, Path(ARTIFACT).parent.as_posix())
            run_id = tr.run_id
    assert run_id is not None
    return run_id


def _read(uri: str | None, runs: pd.DataFrame, tmp: Path) -> tuple[pd.Series, dict] | None:
    if uri is None or runs.empty:
        return None
    bench = runs[tag(runs, BENCHMARK_TAG).fillna("") == "run_all"]
    for _, row in bench.sort_values("start_time", ascending=False).iterrows():
        p = download_artifact(uri, row["run_id"], [ARTIFACT], tmp)
        if p is not None:
            return row, json.loads(p.read_text())
    return None


def performance_section(uri: str | None, runs: pd.DataFrame, tmp: Path) -> str:
    """The report's "Performance" section from the newest ``run_all`` run (see the module
    docstring); one line saying how to make one when there is none."""
    head = "<h2 id='performance'>Performance</h2>"
    found = _read(uri, runs, tmp)
    if found is None:
        return (head + "<p class='no-runs'>no benchmark runs: <code>python benchmarks/run_all.py"
                " --mlflow URI</code> logs one (tag <code>unmask.benchmark=run_all</code>)</p>")
    row, data = found
    m = data.get("machine", {})
    load = m.get("load_avg_1m")
    load = f"{load:.1f}" if isinstance(load, int | float) else "?"
    parts = [head, f"<p class='meta'>run <code>{esc(str(row['run_id'])[:12])}</code> · "
             f"{'quick' if data.get('quick') else 'full'} run of {esc(m.get('date_utc', '?'))} UTC"
             f" · {esc(m.get('cpu', '?'))}, {esc(m.get('cores', '?'))} cores, load "
             f"{load} at start · torch {esc(m.get('torch', '?'))} · "
             f"GPU {esc(m.get('gpu') or 'none')}</p>"]
    summary = pd.DataFrame(data.get("summary", []),
                           columns=["measurement", "measured", "goal", "verdict"])
    if not summary.empty:
        parts.append(frame_table(summary, row_classes=[
            {"ok": "ok", "MISSED": "missed"}.get(v, "na") for v in summary["verdict"]]))
    scaling = pd.DataFrame(data.get("scaling") or [])
    if "table" not in scaling:
        return "".join(parts)
    for table, (title, cols, names) in _SCALING.items():
        t = scaling[scaling["table"] == table]
        have = [c for c in cols if c in t]
        if t.empty or not have:
            continue
        shown = t[have].rename(columns=dict(zip(cols, names, strict=True)))
        parts.append(f"<h3 id='performance-{table}'>{esc(title)}</h3>"
                     + frame_table(shown))
    return "".join(parts)
