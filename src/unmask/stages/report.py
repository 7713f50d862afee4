"""Stage ``report`` (``python -m unmask.stages report``): the MLflow-driven report
(:func:`unmask.reporting.build.build_report`, the one report writer) in
``reports/``, with this pipeline's own sample grid, unmasking chain and model/sampler notes on
top.

Reads every experiment of the tracking store (``$MLFLOW_TRACKING_URI`` or ``tracking.root``):
the default pipeline's stage runs and any ablation sweeps logged beside them. Writes
``reports/index.html`` (self-contained), ``reports/metrics.csv`` (this pipeline's
``metrics/metrics.json`` as a table), and the report's tables (``fidelity.csv``,
``ablations.csv``, ``runs.csv``, ``summary.json``, ``tables/``). With ``tracking.enabled:
false`` the page holds the pipeline's own outputs only.

New ablation runs do not change this stage's DVC deps: rebuild with ``unmask report`` (or
``dvc repro -f report``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from unmask.config import Params
from unmask.reporting.build import build_report
from unmask.reporting.runs import no_runs
from unmask.stages import stage
from unmask.stages.common import PATHS
from unmask.tokenizers import build_tokenizer
from unmask.tracking import tracking_uri


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _pipeline_notes(params: Params) -> tuple[dict[str, Any], dict[str, str], dict[str, Path]]:
    """(metrics.json, notes, figures) of this pipeline's outputs."""
    metrics = json.loads((PATHS.metrics / "metrics.json").read_text())
    info = json.loads((PATHS.samples / "info.json").read_text())
    train = json.loads((PATHS.models / "train.json").read_text())
    s, fs = params.sample, metrics.get("fid_settings", {})
    fid = (
        f"{metrics['fid']:.2f} ± {metrics.get('fid_std', float('nan')):.2f} "
        f"({fs.get('num_samples')} samples vs {fs.get('num_reference')} real held-out; "
        f"tokenizer floor {metrics.get('fid_recon', float('nan')):.2f})"
        if "fid" in metrics
        else "unavailable: " + str(fs.get("unavailable_reason", "evaluate.fid is off"))
    )
    notes = {
        "model": f"{train['num_params']:,} parameters, {train['step']} steps, "
        f"final loss {train['loss']:.4f}",
        "sampler": f"{info['method']}, {info['steps']} steps, NFE {info['nfe']}, "
        f"cfg {s.cfg_scale} ({s.cfg_schedule}), temperature {s.temperature}, "
        f"top-p {s.top_p}",
        "tokenizer": build_tokenizer(params.tokenizer).identity,
        "FID": fid,
        "held-out NELBO (bits/token)": f"{metrics['nelbo_bpt']:.4f} ± "
        f"{metrics['nelbo_bpt_stderr']:.4f}",
    }
    figures = {
        "Class-conditional samples (rows = classes)": PATHS.samples / "grid.png",
        "Unmasking chains (blue = [MASK])": PATHS.samples / "chain.png",
    }
    return metrics, notes, figures


@stage("report", params=Params)
def run(params: Params) -> Path:
    needed = [
        PATHS.metrics / "metrics.json",
        PATHS.samples / "info.json",
        PATHS.models / "train.json",
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:  # `unmask report` outside a reproduced pipeline: the MLflow runs only
        print(f"report: no pipeline outputs ({', '.join(missing)}): MLflow runs only")
        metrics, notes, figures = {}, {}, {}
    else:
        metrics, notes, figures = _pipeline_notes(params)
    PATHS.reports.mkdir(parents=True, exist_ok=True)
    with open(PATHS.reports / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "value"])
        writer.writerows(_flat(metrics).items())
    if params.tracking.enabled:
        uri: str | None = tracking_uri(params.tracking.root)
        runs = None
    else:
        uri, runs = None, no_runs()
    path = build_report(
        uri, PATHS.reports, title=params.report.title, figures=figures, notes=notes, runs=runs
    )
    print(f"report: {path}")
    return path

