"""Grid points of an ablation axis, their identity keys, and the grid's CSV table.

A point is a dict of dotted keys → values (one coordinate per grid key). Its *key* is a hash of
everything that determines the trial's result (the resolved params sections that matter, the
checkpoint or data it starts from, the scoring settings), so a finished point can be found again
in MLflow and skipped, whichever flow run produced it.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unmask.corruption import emigm_time_range
from unmask.orchestration.settings import DERIVED_KEYS, AxisSpec

__all__ = ["GridPoint", "expand", "resolve_overrides", "grid_key", "write_csv"]


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


@dataclass(frozen=True)
class GridPoint:
    """One point of a grid: its index in the grid and its coordinates."""

    index: int
    values: Mapping[str, Any]

    @property
    def label(self) -> str:
        """Short human name, e.g. ``steps=16`` or ``cfg_scale=2,cfg_schedule=linear``."""
        return ",".join(f"{_short(k)}={_fmt(v)}" for k, v in self.values.items())


def expand(spec: AxisSpec, values: Sequence[Any] | None = None,
           grid: Mapping[str, Sequence[Any]] | None = None) -> list[GridPoint]:
    """The points of an axis: ``grid`` replaces the default grid; else ``values`` replaces the
    value list of its first key. Cartesian product, first key varying slowest."""
    g = {k: list(v) for k, v in (grid or spec.grid).items()}
    if values is not None and grid is None:
        first = next(iter(g))
        g[first] = list(values)
    if not g or any(not v for v in g.values()):
        raise ValueError(f"empty grid: {g}")
    keys = list(g)
    return [GridPoint(i, dict(zip(keys, combo, strict=True)))
            for i, combo in enumerate(itertools.product(*(g[k] for k in keys)))]


def resolve_overrides(point: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted params overrides of a point (derived keys expanded, see
    :data:`~unmask.orchestration.settings.DERIVED_KEYS`)."""
    out: dict[str, Any] = {}
    for key, value in point.items():
        if key == "emigm.t_min":
            lo, hi = emigm_time_range(float(value))
            out.update({"train.t_min": lo, "train.t_max": hi})
        elif key in DERIVED_KEYS:  # pragma: no cover - table and code must agree
            raise ValueError(f"derived key {key!r} has no expansion")
        else:
            out[key] = value
    return out


def grid_key(payload: Mapping[str, Any]) -> str:
    """sha256 (hex, 20 chars) of the canonical JSON of ``payload``."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]],
              first: Sequence[str] = ()) -> Path:
    """Write ``rows`` (dicts) to ``path``: columns ``first``, then every other key in order of
    appearance. Non-finite floats are written as empty cells."""
    rows = list(rows)
    cols = list(first)
    for r in rows:
        cols += [k for k in r if k not in cols]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else
                            _fmt(v) if isinstance(v, list | tuple) else v)
                        for k, v in r.items()})
    tmp.replace(path)
    return path
