"""The fidelity table: the papers' claims, their numbers, ours, and whether the direction
reproduces.

The papers' numbers and the claims live in ``references.yaml`` beside this module: every number
with the table / figure / section it comes from and the exact text it was read from in the
paper texts (``../shared/papers/``; ``tests/reporting/test_references_papers.py`` checks each one
there). A claim cites its numbers as ``<values id>/<row label>`` and is checked only on the
ablation it names; with no runs (or not the points it compares) its verdict is ``not covered``
with the reason. Directions (``groups`` limits any of them to those curves, e.g. samplers):

- ``lower_at {metric, better, worse}``: value(x = better) < value(x = worse); ``better: max``
  means the largest x (MDM-Prime: the largest ℓ against ℓ = 1);
- ``lowest_at {metric, x, among}``: x has the lowest value of the present points of ``among``;
- ``decreasing {metric}``: value(largest x) < value(smallest x) in every group;
- ``argmin_in {metric, low, high}``: the x of the lowest value lies in [low, high];
- ``guidance_helps {metric}``: min over w > 0 < value(w = 0) in every group.

Each comparison uses the points' standard errors (``stderr``: FID jackknife, spread over seeds)
when both have one: a difference within :data:`NOISE_SE` standard errors is ``within noise``.

Only the metric the claim names counts (``metric`` may list alternatives, e.g. ``[ppl,
bits_per_dim]``): a claim about FID is ``not covered`` by runs that could only log a proxy.
Perplexities and bits/dim are upper bounds on both sides (the papers' ≤, our ELBO), shown with
"≤"; our MDM-Prime bound is not the paper's eq. (5) estimator, so only directions are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from unmask.reporting.ablations import ESTIMATOR_NOTES, estimator_note

__all__ = [
    "REFERENCES_FILE",
    "NOISE_SE",
    "Claim",
    "PaperValue",
    "references",
    "resolve_values",
    "load_claims",
    "check_claim",
    "fidelity_table",
]

REFERENCES_FILE = Path(__file__).with_name("references.yaml")
_DIRECTIONS = ("lower_at", "lowest_at", "decreasing", "argmin_in", "guidance_helps")


@lru_cache(maxsize=1)
def references() -> dict[str, Any]:
    """The parsed ``references.yaml`` (papers, transcribed values, claims)."""
    return yaml.safe_load(REFERENCES_FILE.read_text())


@dataclass(frozen=True)
class PaperValue:
    """One transcribed number: ``upper`` marks an upper bound (the paper's ≤)."""

    value: float
    upper: bool = False
    where: str = ""
    unit: str = ""

    @property
    def display(self) -> str:
        return ("≤" if self.upper else "") + f"{self.value:g}{self.unit}"


def resolve_values(refs: dict[str, Any]) -> dict[str, PaperValue]:
    """Every transcribed number by ``<values id>/<row label>``."""
    out = {}
    for v in refs["values"]:
        upper = v.get("bound") == "upper"
        for label, x in v["entries"].items():
            out[f"{v['id']}/{label}"] = PaperValue(
                float(x), upper and label not in v.get("exact", []), v["where"], v.get("unit", ""))
    return out


@dataclass(frozen=True)
class Claim:
    id: str
    ablation: str
    paper: str
    where: str
    claim: str
    direction: dict[str, Any]
    paper_values: dict[str, PaperValue]  # row label → number, from ``values``

    @property
    def citation(self) -> str:
        p = references()["papers"][self.paper]
        return f"{p['title']} ({p['ref']}), {self.where}"

    @property
    def source(self) -> str:
        """The paper's address (the numbers themselves are read from its text, see the module)."""
        return str(references()["papers"][self.paper].get("url", ""))

    @property
    def spec(self) -> dict[str, Any]:
        return next(iter(self.direction.values()))

    @property
    def metrics(self) -> list[str]:
        m = self.spec["metric"]
        return [m] if isinstance(m, str) else list(m)

    @property
    def metric(self) -> str:
        return " / ".join(self.metrics)


def load_claims() -> list[Claim]:
    """The claims of ``references.yaml`` with their numbers resolved; a bad entry is one
    ``ValueError`` line naming the claim and the key."""
    refs = references()
    values = resolve_values(refs)
    claims = []
    for c in refs["claims"]:
        name = f"{REFERENCES_FILE.name}: claim {c.get('id')!r}"
        if c.get("paper") not in refs["papers"]:
            raise ValueError(f"{name}: paper must be one of {sorted(refs['papers'])}")
        kind = next(iter(c.get("direction") or {}), None)
        if kind not in _DIRECTIONS:
            raise ValueError(f"{name}: direction must be one of {_DIRECTIONS}, got {kind!r}")
        missing = [r for r in c.get("paper_values") or [] if r not in values]
        if missing or not c.get("paper_values"):
            raise ValueError(f"{name}: paper_values must name transcribed values "
                             f"(<values id>/<label>); not found: {missing or 'none given'}")
        pv = {r.split("/", 1)[1]: values[r] for r in c["paper_values"]}
        claims.append(Claim(c["id"], c["ablation"], c["paper"], c["where"], c["claim"],
                            c["direction"], pv))
    return claims


def _match(x: Any, target: Any) -> bool:
    try:
        return abs(float(x) - float(target)) < 1e-9
    except (TypeError, ValueError):
        return str(x) == str(target)


#: a difference within this many standard errors of the difference is "within noise" (fixed
#: before any run: about a 95 % two-sided band for independent, roughly normal estimates).
NOISE_SE = 2.0


@dataclass(frozen=True)
class _Point:
    x: Any
    value: float
    se: float  # NaN: unknown

    def show(self, fmt: Any) -> str:
        err = f" ± {self.se:.2g}" if self.se == self.se else ""
        x = pd.to_numeric(self.x, errors="coerce")
        return f"{self.x if pd.isna(x) else format(float(x), 'g')}: {fmt(self.value)}{err}"


def _points(g: pd.DataFrame) -> list[_Point]:
    se = g["stderr"] if "stderr" in g else pd.Series(float("nan"), index=g.index)
    return [_Point(x, float(v), float(s)) for x, v, s in zip(g["x"], g["value"], se, strict=True)]


def _at(g: pd.DataFrame, target: Any) -> _Point | None:
    """The point ``target`` (an x value, or ``max`` / ``min`` for the extremes)."""
    pts = _points(g)
    if target in ("max", "min"):
        xs = pd.to_numeric(g["x"], errors="coerce").tolist()
        ok = [i for i, x in enumerate(xs) if x == x]
        if not ok:
            return None
        pick = max if target == "max" else min
        return pts[pick(ok, key=lambda i: xs[i])]
    return next((p for p in pts if _match(p.x, target)), None)


def _lower(a: _Point, b: _Point) -> str:
    """Does ``a`` lie below ``b``: ``holds``, ``fails``, or ``noise`` when both carry a standard
    error and |a − b| ≤ NOISE_SE·√(se_a² + se_b²) (without error bars the sign decides)."""
    se = (a.se**2 + b.se**2) ** 0.5
    if se == se and abs(a.value - b.value) <= NOISE_SE * se:
        return "noise"
    return "holds" if a.value < b.value else "fails"


def _group_check(kind: str, spec: dict[str, Any], g: pd.DataFrame,
                 fmt: Any) -> tuple[str, str] | None:
    """(holds / fails / noise, our numbers) for one curve; None when it lacks the points."""
    if kind == "lower_at":
        b, w = _at(g, spec["better"]), _at(g, spec["worse"])
        if b is None or w is None or _match(b.x, w.x):  # needs two distinct points
            return None
        return _lower(b, w), f"{b.show(fmt)}, {w.show(fmt)}"
    if kind == "lowest_at":
        pts = [p for p in (_at(g, a) for a in spec["among"]) if p is not None]
        own = _at(g, spec["x"])
        if own is None or len(pts) < 2:
            return None
        rival = min((p for p in pts if not _match(p.x, own.x)), key=lambda p: p.value)
        return _lower(own, rival), ", ".join(p.show(fmt) for p in pts)
    pts = [p for p in _points(g) if pd.notna(pd.to_numeric(p.x, errors="coerce"))]
    if len(pts) < 2:
        return None
    pts.sort(key=lambda p: float(p.x))
    if kind == "decreasing":
        lo, hi = pts[0], pts[-1]
        return _lower(hi, lo), f"{lo.show(fmt)} → {hi.show(fmt)}"
    if kind == "argmin_in":
        best = min(pts, key=lambda p: p.value)
        inside = [p for p in pts if spec["low"] <= float(p.x) <= spec["high"]]
        text = f"best at {best.show(fmt)}"
        if spec["low"] <= float(best.x) <= spec["high"]:
            return "holds", text
        if not inside:
            return "fails", text
        near = min(inside, key=lambda p: p.value)  # the band's best against the overall best
        near_ok = _lower(best, near) == "noise"
        return ("noise" if near_ok else "fails"), f"{text}; best in the band {near.show(fmt)}"
    zero = [p for p in pts if float(p.x) == 0]  # guidance_helps
    pos = [p for p in pts if float(p.x) > 0]
    if not zero or not pos:
        return None
    best = min(pos, key=lambda p: p.value)
    return _lower(best, zero[0]), f"w={zero[0].show(fmt)}, best w={best.show(fmt)}"


def check_claim(claim: Claim, table: pd.DataFrame) -> tuple[str, str]:
    """(verdict, our numbers) for one claim on the tidy table of its ablation. Verdicts:
    ``reproduced`` (every curve shows the direction), ``not reproduced`` (a curve shows the
    opposite beyond noise), ``within noise`` (no curve contradicts it beyond noise, but at least
    one difference lies within :data:`NOISE_SE` standard errors), ``not covered``."""
    kind, spec = next(iter(claim.direction.items()))
    if kind not in _DIRECTIONS:
        raise ValueError(f"claim {claim.id!r}: unknown direction {kind!r}")
    names = claim.metrics
    t = table[table["metric"].isin(names)] if len(table) else table
    if t.empty:
        return "not covered", f"the runs logged no {' / '.join(names)}"
    if spec.get("groups") is not None:
        t = t[t["group"].astype(str).isin([str(x) for x in spec["groups"]])]
        if t.empty:
            return "not covered", f"the runs have no {' / '.join(map(str, spec['groups']))} curve"
    bound = any(m in ESTIMATOR_NOTES for m in names)  # our likelihoods are upper bounds too

    def fmt(v: float) -> str:
        return ("≤" if bound else "") + f"{v:.4g}"

    outcomes: list[str] = []
    ours: list[str] = []
    for group, g in t.groupby("group", sort=False):
        got = _group_check(kind, spec, g, fmt)
        if got is not None:
            outcomes.append(got[0])
            ours.append((f"[{group}] " if group else "") + got[1])
    if not outcomes:
        return "not covered", "the runs do not include the compared points"
    verdict = ("not reproduced" if "fails" in outcomes
               else "within noise" if "noise" in outcomes else "reproduced")
    return verdict, "; ".join(ours)


def fidelity_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per claim: ablation, claim, citation, the paper's address (``source_url``), the
    paper's numbers, ours, verdict, and ``note``: which estimator ours is when it differs from
    the paper's (MDM-Prime PPLs, :func:`unmask.reporting.ablations.estimator_note`)."""
    rows = []
    for c in load_claims():
        if c.ablation in tables:
            verdict, ours = check_claim(c, tables[c.ablation])
        else:
            verdict, ours = "not covered", f"the report has no {c.ablation!r} ablation section"
        rows.append(
            {
                "id": c.id,
                "ablation": c.ablation,
                "claim": c.claim,
                "metric": c.metric,
                "source": c.citation,
                "source_url": c.source,
                "paper": "; ".join(f"{k}: {v.display}" for k, v in c.paper_values.items()),
                "ours": ours,
                "verdict": verdict,
                "note": estimator_note(c.metrics),
            }
        )
    return pd.DataFrame(rows)
