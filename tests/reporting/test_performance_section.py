"""The report's Performance section: a ``run_all`` result logged to MLflow
(:func:`unmask.reporting.benchmarks.log_benchmarks`) comes back as its goals table and the
scaling tables; without one the section says how to make one."""

import re

from unmask.reporting.benchmarks import log_benchmarks
from unmask.reporting.build import build_report

MACHINE = {"cpu": "Test CPU", "cores": 2, "load_avg_1m": 0.4871, "torch": "2.x", "python": "3.11",
           "gpu": None, "date_utc": "2026-11-23 12:00"}
SUMMARY = [["peers: ETM euler vs flow_matching", "2.99x", ">= 1.5x", "ok"],
           ["train: our step / bare loop tokens/s", "0.931", ">= 0.95", "MISSED"]]
SCALING = [
    {"table": "sampling_vs_length", "L": 4096, "steps": 8, "batch": 1, "s_per_sample": 1.5331,
     "ms_per_step": 191.6, "nfe": 8},
    {"table": "sampling_vs_steps", "mode": "implicit", "L": 256, "steps": 1024, "batch": 2,
     "nfe": 222, "nfe_mean": 220.5, "s_per_sample": 1.083, "uncached_s_per_sample": 2.941,
     "speedup": 2.7156, "ideal_speedup": 2.6327, "speedup_over_ideal": 1.031},
    {"table": "train_vs_size", "model": "small", "params": 22070000, "batch": 4, "L": 128,
     "s_per_step": 0.736, "tokens_per_s": 695.6, "model_gflops": 63.04},
]


def _section(html: str) -> str:
    start = html.index('id="performance"') if 'id="performance"' in html else html.index(
        "id='performance'")
    end = html.find("<h2", start)
    return html[start:end if end > 0 else None]


def test_logged_benchmarks_are_shown(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old = log_benchmarks(uri, [["old row", "1", "2", "ok"]], None, MACHINE, quick=True)
    new = log_benchmarks(uri, SUMMARY, SCALING, MACHINE, quick=False)
    assert old != new
    sec = _section(build_report(uri, tmp_path / "out").read_text())
    assert new[:12] in sec and "old row" not in sec  # the newest run only
    for row in SUMMARY:
        assert all(cell.replace(">", "&gt;") in sec for cell in row)
    assert re.search(r"<tr class=.missed.>", sec)
    for value in ("4096", "191.6", "1.031", "2.207e+07", "63.04", "Test CPU", "load 0.5 at"):
        assert value in sec, value
    for table in ("sampling_vs_length", "sampling_vs_steps", "train_vs_size"):
        assert f"performance-{table}" in sec


def test_without_benchmark_runs_the_section_says_how(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sec = _section(build_report(uri, tmp_path / "out").read_text())
    assert "no benchmark runs" in sec and "run_all.py --mlflow" in sec
