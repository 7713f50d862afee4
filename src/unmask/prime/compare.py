"""The ℓ comparison of an MDM-Prime pipeline (the ``prime.report`` stage): every ℓ side by side,
with the paired (same held-out sequences, same Monte-Carlo times) NELBO difference to ℓ = 1 and
its standard error, and a verdict on MDM-Prime's claim that ℓ > 1 lowers the perplexity.

Reads ``eval/l<ℓ>/{metrics.json,nelbo.npy}`` and ``models/l<ℓ>/train.json``; writes
``metrics.json`` (DVC metrics) and ``reports/metrics.csv``. The NELBO is :data:`ESTIMATOR`:
perplexities compare across ℓ here, not with MDM-Prime Tab. 2 as the same estimator.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from unmask.prime.pipeline import ESTIMATOR, EVAL, MODELS

__all__ = ["ROWS", "paired_delta", "compare", "verdict", "write_tables", "write_html"]

REPORTS, METRICS = Path("reports"), Path("metrics.json")

#: rows of the comparison table: (key in eval/l<ℓ>/metrics.json, label)
ROWS = [("perplexity", "ELBO perplexity (↓)"), ("nelbo_nats_per_token", "NELBO nats/token"),
        ("nelbo_stderr", "± stderr"), ("bits_per_token", "bits/token (bits/dim for pixels)"),
        ("base", "sub-token base b"), ("isr", "ISR (network input unchanged)"),
        ("isr_expected", "ISR closed form"), ("isr_token", "ISR (no token completed)"),
        ("isr_token_expected", "  closed form"), ("train_step", "training steps"),
        ("num_params", "parameters")]


def paired_delta(ell: int, base: int = 1) -> tuple[float, float] | None:
    """Mean per-token NELBO difference ℓ − base on the same sequences and its stderr
    (ddof = 1 over sequences); None without both ``nelbo.npy`` of equal shape."""
    a, b = EVAL / f"l{ell}" / "nelbo.npy", EVAL / f"l{base}" / "nelbo.npy"
    if ell == base or not (a.is_file() and b.is_file()):
        return None
    da, db = np.load(a), np.load(b)
    if da.shape != db.shape:
        return None
    d = (da - db) / json.loads((EVAL / f"l{ell}" / "metrics.json").read_text())[
        "tokens_per_sequence"]
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


def compare(ells: list[int]) -> dict[str, Any]:
    """``{"ells", "estimator", "per_ell": {"l<ℓ>": metrics + num_params + delta}, "verdict"}``."""
    per: dict[int, dict[str, Any]] = {}
    for ell in ells:
        m = json.loads((EVAL / f"l{ell}" / "metrics.json").read_text())
        tr = json.loads((MODELS / f"l{ell}" / "train.json").read_text())
        m["num_params"] = tr["num_params"]  # wall clock: runs/timings and MLflow, not here
        paired = paired_delta(ell)
        if paired is not None:
            m["delta_nelbo_vs_l1"], m["delta_nelbo_vs_l1_stderr"] = paired
        per[ell] = m
    return {"ells": ells, "estimator": ESTIMATOR, "per_ell": {f"l{e}": per[e] for e in ells},
            "verdict": verdict(per)}


def verdict(per: dict[int, dict[str, Any]]) -> str:
    """One sentence per ℓ > 1: better / worse / not distinguishable from ℓ = 1 at |z| > 2 of
    the paired NELBO difference."""
    if 1 not in per or len(per) < 2:
        return "no ℓ = 1 baseline to compare with"
    parts = []
    for e, m in per.items():
        if e == 1 or "delta_nelbo_vs_l1" not in m:
            continue
        d, s = m["delta_nelbo_vs_l1"], m["delta_nelbo_vs_l1_stderr"]
        z = d / s if s > 0 else float("inf") * (1 if d > 0 else -1)
        if z < -2:
            word = "better than"
        elif z > 2:
            word = "worse than"
        else:
            word = "not distinguishable from"
        parts.append(f"ℓ={e} PPL {m['perplexity']:.2f} is {word} ℓ=1 PPL "
                     f"{per[1]['perplexity']:.2f} (ΔNELBO {d:+.4f} ± {s:.4f} nats/token, "
                     f"paired, z = {z:+.1f})")
    return "; ".join(parts) + " — MDM-Prime claims ℓ > 1 is better."


def write_tables(summary: dict[str, Any]) -> None:
    """``metrics.json`` and ``reports/metrics.csv`` (one column per ℓ, rows :data:`ROWS`)."""
    METRICS.write_text(json.dumps(summary, indent=2) + "\n")
    REPORTS.mkdir(parents=True, exist_ok=True)
    with open(REPORTS / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", *summary["per_ell"]])
        for key, _ in ROWS:
            w.writerow([key, *[m.get(key) for m in summary["per_ell"].values()]])
        w.writerow(["estimator", *[m.get("estimator", ESTIMATOR)
                                   for m in summary["per_ell"].values()]])


def write_html(summary: dict[str, Any], title: str, params: dict[str, Any]) -> None:
    """``reports/index.html``: the table, the verdict, the estimator and a few samples."""
    per = summary["per_ell"]

    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>ℓ = {k[1:]}</th>" for k in per)
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(f"<td>{fmt(m.get(key))}</td>" for m in per.values()) + "</tr>"
        for key, label in ROWS)
    extra = []
    for k in per:
        png, txt = EVAL / k / "samples.png", EVAL / k / "samples.txt"
        if png.is_file():
            uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
            extra.append(f"<h3>Samples, ℓ = {k[1:]}</h3><img src='{uri}'>")
        elif txt.is_file():
            first = txt.read_text().split("===== sample ")[1:3]
            shown = html.escape("===== sample " + "===== sample ".join(first))
            extra.append(f"<h3>Samples, ℓ = {k[1:]}</h3><pre>{shown}</pre>")
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}"
        "td:first-child{text-align:left}pre{white-space:pre-wrap;background:#f6f6f6;"
        "padding:8px}</style>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p><b>Verdict:</b> {html.escape(summary['verdict'])}</p>"
        f"<table><tr><th></th>{head}</tr>{body}</table>"
        f"<p>NELBO and perplexity: {html.escape(ESTIMATOR)} — an upper bound on the NLL, "
        "per token of the data, on the same validation sequences for every ℓ; compare the "
        "direction over ℓ, not the values with MDM-Prime Tab. 2. ISR: fraction of sampling "
        "steps whose output equals the input sequence.</p>"
        + "".join(extra)
        + f"<h3>Parameters</h3><pre>{html.escape(json.dumps(params, indent=1))}</pre>"
    )
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "index.html").write_text(page)
