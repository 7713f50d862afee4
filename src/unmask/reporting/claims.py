"""The fidelity table: the papers' claims, their numbers, ours, and whether the direction
reproduces.

The claims and the papers' numbers live in ``references.yaml`` beside this module (one place,
each with its table / figure, and ``source``: the address the numbers were read from, shown as a
link in the report; a claim without one has no transcribed numbers yet). A claim is checked
only on the ablation it names; with no runs (or not the points it compares) its verdict is
``not covered``. Directions:

- ``lower_at {metric, better, worse}``: value(x = better) < value(x = worse); ``better: max``
  means the largest x (MDM-Prime: the largest ℓ against ℓ = 1);
- ``decreasing {metric}``: value(largest x) < value(smallest x) in every group;
- ``argmin_in {metric, low, high}``: the x of the lowest value lies in [low, high] in every
  group;
- ``guidance_helps {metric}``: min over w > 0 < value(w = 0) in every group;
- ``not_worse {metric, tolerance}``: every x > 0 has value <= value(x = 0)·(1 + tolerance).

Only the metric the claim names counts (``metric`` may list alternatives, e.g. ``[ppl,
bits_per_dim]``): a claim about FID is ``not covered`` by runs that could only log a proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

__all__ = ["REFERENCES_FILE", "Claim", "references", "load_claims", "check_claim", "fidelity_table"]

REFERENCES_FILE = Path(__file__).with_name("references.yaml")


@lru_cache(maxsize=1)
def references() -> dict[str, Any]:
    """The parsed ``references.yaml`` (papers, headline values, claims)."""
    return yaml.safe_load(REFERENCES_FILE.read_text())


@dataclass(frozen=True)
class Claim:
    id: str
    ablation: str
    paper: str
    where: str
    claim: str
    direction: dict[str, Any]
    paper_values: dict[str, float] | None
    source: str | None = None  # URL the paper's numbers were read from

    @property
    def citation(self) -> str:
        p = references()["papers"][self.paper]
        return f"{p['title']} ({p['ref']}), {self.where}"

    @property
    def metric(self) -> str:
        m = next(iter(self.direction.values()))["metric"]
        return m if isinstance(m, str) else " / ".join(m)


def load_claims() -> list[Claim]:
    claims = [Claim(**c) for c in references()["claims"]]
    for c in claims:
        if c.source is not None and not str(c.source).startswith(("https://", "http://")):
            raise ValueError(
                f"{REFERENCES_FILE.name}: claim {c.id!r}: source must be an http(s) URL, "
                f"got {c.source!r}"
            )
    return claims


def _match(x: Any, target: Any) -> bool:
    try:
        return abs(float(x) - float(target)) < 1e-9
    except (TypeError, ValueError):
        return str(x) == str(target)


def _at(g: pd.DataFrame, target: Any) -> tuple[Any, float] | None:
    """(x, value) of the point ``target`` (an x value, or ``max`` / ``min`` for the extremes)."""
    if target in ("max", "min"):
        xs = pd.to_numeric(g["x"], errors="coerce")
        i = xs.idxmax() if target == "max" else xs.idxmin()
        return g.loc[i, "x"], float(g.loc[i, "value"])
    hit = g[[_match(x, target) for x in g["x"]]]
    return (hit["x"].iloc[0], float(hit["value"].iloc[0])) if len(hit) else None


def check_claim(claim: Claim, table: pd.DataFrame) -> tuple[str, str]:
    """(verdict, our numbers) for one claim on the tidy table of its ablation. Verdicts:
    ``reproduced``, ``not reproduced``, ``not covered``."""
    kind, spec = next(iter(claim.direction.items()))
    names = [spec["metric"]] if isinstance(spec["metric"], str) else list(spec["metric"])
    t = table[table["metric"].isin(names)] if len(table) else table
    if t.empty:
        return "not covered", f"no runs with {' / '.join(names)}"
    verdicts: list[bool] = []
    ours: list[str] = []
    for group, g in t.groupby("group", sort=False):
        label = f"[{group}] " if group else ""
        if kind == "lower_at":
            b, w = _at(g, spec["better"]), _at(g, spec["worse"])
            if b is None or w is None or _match(b[0], w[0]):  # needs two distinct points
                continue
            verdicts.append(b[1] < w[1])
            ours.append(f"{label}{b[0]}: {b[1]:.4g}, {w[0]}: {w[1]:.4g}")
        elif kind in ("decreasing", "argmin_in", "guidance_helps", "not_worse"):
            g = g.assign(xn=pd.to_numeric(g["x"], errors="coerce")).dropna(subset=["xn"])
            if len(g) < 2:
                continue
            g = g.sort_values("xn")
            if kind == "decreasing":
                lo, hi = g.iloc[0], g.iloc[-1]
                verdicts.append(hi["value"] < lo["value"])
                ours.append(
                    f"{label}x={lo['xn']:g}: {lo['value']:.4g} → x={hi['xn']:g}: {hi['value']:.4g}"
                )
            elif kind == "argmin_in":
                best = g.loc[g["value"].idxmin()]
                verdicts.append(spec["low"] <= best["xn"] <= spec["high"])
                ours.append(f"{label}best x={best['xn']:g} ({best['value']:.4g})")
            elif kind == "guidance_helps":
                zero, pos = g[g["xn"] == 0], g[g["xn"] > 0]
                if zero.empty or pos.empty:
                    continue
                best = pos.loc[pos["value"].idxmin()]
                verdicts.append(best["value"] < zero["value"].iloc[0])
                ours.append(
                    f"{label}w=0: {zero['value'].iloc[0]:.4g}, best w={best['xn']:g}: "
                    f"{best['value']:.4g}"
                )
            else:
                zero, pos = g[g["xn"] == 0], g[g["xn"] > 0]
                if zero.empty or pos.empty:
                    continue
                z = zero["value"].iloc[0]
                verdicts.append(bool((pos["value"] <= z * (1 + spec["tolerance"])).all()))
                ours.append(
                    f"{label}0: {z:.4g}; "
                    + ", ".join(
                        f"{x:g}: {v:.4g}" for x, v in zip(pos["xn"], pos["value"], strict=True)
                    )
                )
        else:
            raise ValueError(f"claim {claim.id!r}: unknown direction {kind!r}")
    if not verdicts:
        return "not covered", "the runs do not include the compared points"
    return ("reproduced" if all(verdicts) else "not reproduced"), "; ".join(ours)


def fidelity_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per claim: ablation, claim, citation, the address its numbers were read from
    (``source_url``, empty if none), the paper's numbers, ours, verdict, and ``note``: which
    estimator ours is when it differs from the paper's (MDM-Prime PPLs,
    :func:`unmask.reporting.ablations.estimator_note`)."""
    from unmask.reporting.ablations import estimator_note

    rows = []
    for c in load_claims():
        kind_spec = next(iter(c.direction.values()))
        names = [kind_spec["metric"]] if isinstance(kind_spec["metric"], str) else list(
            kind_spec["metric"])
        verdict, ours = check_claim(c, tables.get(c.ablation, pd.DataFrame()))
        paper = (
            "; ".join(f"{k}: {v:g}" for k, v in c.paper_values.items())
            if c.paper_values
            else "not transcribed"
        )
        rows.append(
            {
                "id": c.id,
                "ablation": c.ablation,
                "claim": c.claim,
                "metric": c.metric,
                "source": c.citation,
                "source_url": c.source or "",
                "paper": paper,
                "ours": ours,
                "verdict": verdict,
                "note": estimator_note(names),
            }
        )
    return pd.DataFrame(rows)
