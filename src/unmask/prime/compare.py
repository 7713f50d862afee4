"""The ℓ comparison of an MDM-Prime pipeline (the ``prime.report`` stage): every ℓ side by side,
with the paired (same held-out sequences, same Monte-Carlo times) NELBO difference to ℓ = 1 and
its standard error, and a verdict on MDM-Prime's claim that ℓ > 1 lowers the perplexity.

Reads ``eval/l<ℓ>/{metrics.json,nelbo.npy}`` and ``models/l<ℓ>/train.json``; writes
``metrics.json`` (DVC metrics) and ``reports/ells.csv`` (one column per ℓ); the page itself is
the one report writer's (:func:`unmask.reporting.build.write_pipeline_report`), with
:func:`notes` on top. The NELBO is :data:`ESTIMATOR`: perplexities compare across ℓ here, not
with MDM-Prime Tab. 2 as the same estimator.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from unmask.prime.pipeline import ESTIMATOR, EVAL, MODELS

__all__ = ["ROWS", "REPORTS", "METRICS", "TABLE", "paired_delta", "compare", "verdict",
           "write_tables", "notes", "figures"]

REPORTS, METRICS = Path("reports"), Path("metrics.json")
TABLE = REPORTS / "ells.csv"  # reports/metrics.csv is the page writer's (every run's metrics)

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
    """``metrics.json`` and :data:`TABLE` (one column per ℓ, rows :data:`ROWS` + estimator)."""
    METRICS.write_text(json.dumps(summary, indent=2) + "\n")
    REPORTS.mkdir(parents=True, exist_ok=True)
    with open(TABLE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", *summary["per_ell"]])
        for key, _ in ROWS:
            w.writerow([key, *[m.get(key) for m in summary["per_ell"].values()]])
        w.writerow(["estimator", *[m.get("estimator", ESTIMATOR)
                                   for m in summary["per_ell"].values()]])


def _g(v: Any, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def notes(summary: dict[str, Any]) -> dict[str, str]:
    """The rows on top of the page: verdict, estimator, one line per ℓ (shown with tracking
    disabled too, where the page has no runs to read them from)."""
    rows = {"verdict": summary["verdict"], "NELBO / perplexity estimator": summary["estimator"]}
    for key, m in summary["per_ell"].items():
        delta = ""
        if "delta_nelbo_vs_l1" in m:
            delta = (f"; ΔNELBO vs ℓ = 1 {m['delta_nelbo_vs_l1']:+.4f} ± "
                     f"{m['delta_nelbo_vs_l1_stderr']:.4f} (paired)")
        rows[f"ℓ = {key[1:]} (b = {m['base']})"] = (
            f"PPL {_g(m['perplexity'], '.2f')}, NELBO {_g(m['nelbo_nats_per_token'], '.4f')} ± "
            f"{_g(m['nelbo_stderr'], '.4f')} nats/token = {_g(m['bits_per_token'], '.4f')} "
            f"bits/token (bits/dim for pixels){delta}; ISR {_g(m['isr'], '.3f')} "
            f"(closed form {_g(m.get('isr_expected'), '.3f')}); {m['train_step']} steps")
    return rows


def figures(summary: dict[str, Any]) -> dict[str, Path]:
    """Sample grids of the pixel pipelines (caption → PNG); text samples are run artifacts."""
    pngs = {f"samples, ℓ = {k[1:]}": EVAL / k / "samples.png" for k in summary["per_ell"]}
    return {c: p for c, p in pngs.items() if p.is_file()}
