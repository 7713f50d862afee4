"""What each ablation plots: its x (a swept param), its grouping and its metric.

:data:`ABLATIONS` lists the report's sections in order. :func:`ablation_table` turns the runs of
one ablation (see :mod:`unmask.reporting.runs`) into a tidy table, one row per point::

    ablation, x, group, metric, value, stderr, y2_metric, y2, run_id, run_name, experiment

The metric is FID whenever a run of the ablation logged ``fid``; otherwise the runs' primary
metric (``unmask.primary_metric``, e.g. ``hist_tv``) is plotted *under its own name* — a
proxy is never labelled FID. Several runs of the same point keep the newest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from unmask.reporting.runs import metric, param, tag

__all__ = ["AblationSpec", "ABLATIONS", "ABLATION_IDS", "ablation_table", "choose_metric"]


@dataclass(frozen=True)
class AblationSpec:
    """One report section.

    Attributes:
        id: the ``unmask.ablation`` tag value.
        title: section heading.
        x_keys: params holding x, first found wins (``point.<key>`` before ``<key>``).
        x_metric: a metric to use as x instead when logged (``nfe``: the real NFE with CFG).
        x_label: axis title.
        categorical: x is a name (a bar chart, DI Table S8 style), not a number.
        group_key: param splitting the points into curves (sampler, guidance schedule).
        metrics: preferred y metrics in order (the first logged by any run wins).
        y2: a second metric plotted on its own axis (training cost).
        log_x: logarithmic x axis.
        per_group_metric: each group chooses its metric (one plot panel per metric).
    """

    id: str
    title: str
    x_keys: tuple[str, ...]
    x_label: str
    x_metric: str | None = None
    categorical: bool = False
    group_key: str | None = None
    metrics: tuple[str, ...] = ("fid",)
    y2: str | None = None
    log_x: bool = False
    per_group_metric: bool = False
    description: str = ""
    fallbacks: tuple[str, ...] = field(default=("hist_tv", "class_mean_mse"))


ABLATIONS: tuple[AblationSpec, ...] = (
    AblationSpec(
        "nfe",
        "FID vs NFE per sampler",
        ("sample.steps",),
        "NFE (network calls)",
        x_metric="nfe",
        group_key="sample.method",
        log_x=True,
        description="Sampling steps swept on one checkpoint; one curve per sampler.",
    ),
    AblationSpec(
        "temperature",
        "FID vs temperature",
        ("sample.temperature",),
        "softmax temperature",
        group_key="sample.method",
        description="Sampling temperature swept on one checkpoint.",
    ),
    AblationSpec(
        "cfg",
        "FID vs CFG scale per guidance schedule",
        ("sample.cfg_scale",),
        "guidance scale w",
        group_key="sample.cfg_schedule",
        description="Classifier-free guidance scale × guidance schedule.",
    ),
    AblationSpec(
        "schedule",
        "FID per κ schedule (DI Table S8 style)",
        ("train.schedule",),
        "κ_t schedule",
        categorical=True,
        description="One model trained per κ_t schedule.",
    ),
    AblationSpec(
        "t_min",
        "FID and training cost vs t_min (eMIGM)",
        ("train.t_min", "emigm.t_min"),
        "t_min (mask time)",
        group_key="kind",
        y2="train_seconds",
        description="Time truncation t_min; training seconds on the right axis (dashed).",
    ),
    AblationSpec(
        "prime_l",
        "PPL vs sub-token count ℓ (MDM-Prime)",
        ("prime.l", "ell", "prime.ell"),
        "sub-tokens per token ℓ",
        group_key="experiment",
        per_group_metric=True,
        metrics=("ppl", "perplexity", "bits_per_dim"),
        fallbacks=(),
        description="ELBO perplexity (bits/dim for pixel models) of one model per ℓ "
        "(ℓ = 1 is plain MDM); repeats over training seeds are averaged (± standard error).",
    ),
)
ABLATION_IDS = tuple(a.id for a in ABLATIONS)


def choose_metric(runs: pd.DataFrame, spec: AblationSpec) -> str | None:
    """The y metric of an ablation: the first of ``spec.metrics`` logged by any run, else the
    most common ``unmask.primary_metric`` tag, else the first logged fallback."""
    for m in spec.metrics:
        if metric(runs, m).notna().any():
            return m
    primary = tag(runs, "unmask.primary_metric").dropna()
    primary = primary[[metric(runs, p).notna().any() for p in primary]]
    if len(primary):
        return str(primary.mode().iloc[0])
    for m in spec.fallbacks:
        if metric(runs, m).notna().any():
            return m
    return None


def _x_values(runs: pd.DataFrame, spec: AblationSpec) -> pd.Series:
    x = pd.Series([None] * len(runs), index=runs.index, dtype=object)
    if spec.x_metric is not None:
        x = (
            metric(runs, spec.x_metric)
            .astype(object)
            .where(metric(runs, spec.x_metric).notna(), None)
        )
    for key in spec.x_keys:
        x = x.where(x.notna(), param(runs, key))
    if spec.id == "prime_l":
        x = x.where(x.notna(), tag(runs, "ell"))
    if spec.categorical:
        return x.astype(object)
    return pd.to_numeric(x, errors="coerce")


def _average_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, x): the mean over seeds, with the standard error over seeds as
    ``stderr`` (kept from the run when there is one seed) and the seeds' count in ``n_seeds``."""
    rows = []
    for _, g in table.groupby(["group", "x"], sort=False):
        row = g.iloc[-1].copy()
        n = len(g)
        row["n_seeds"] = n
        if n > 1:
            row["value"] = float(g["value"].mean())
            row["stderr"] = float(g["value"].std(ddof=1) / np.sqrt(n))
            row["y2"] = float(g["y2"].mean()) if g["y2"].notna().any() else np.nan
            row["run_id"] = ",".join(g["run_id"])
        rows.append(row)
    return pd.DataFrame(rows).drop(columns=["_start", "_seed"])


def ablation_table(runs: pd.DataFrame, spec: AblationSpec) -> pd.DataFrame:
    """Tidy table of one ablation's points (see the module docstring); empty when no run of
    the ablation has both an x and the metric."""
    cols = [
        "ablation",
        "x",
        "group",
        "metric",
        "value",
        "stderr",
        "y2_metric",
        "y2",
        "n_seeds",
        "run_id",
        "run_name",
        "experiment",
    ]
    sub = runs[runs["ablation"] == spec.id] if "ablation" in runs else runs.iloc[:0]
    if spec.group_key == "experiment":
        group = sub["experiment"].fillna("—").astype(str)
    elif spec.group_key:
        group = param(sub, spec.group_key).fillna("—").astype(str)
    else:
        group = pd.Series("", index=sub.index)
    # one metric for the ablation; with per_group_metric each group picks its own (MDM-Prime:
    # ppl for text experiments, bits_per_dim for pixel ones — plotted in separate panels)
    chosen = pd.Series([None] * len(sub), index=sub.index, dtype=object)
    if spec.per_group_metric:
        for g in group.unique():
            chosen[group == g] = choose_metric(sub[group == g], spec)
    elif len(sub):
        chosen[:] = choose_metric(sub, spec)
    if chosen.isna().all():
        return pd.DataFrame(columns=cols)
    value = pd.Series(np.nan, index=sub.index)
    se = pd.Series(np.nan, index=sub.index)
    for m in chosen.dropna().unique():
        rows = chosen == m
        value[rows] = metric(sub, m)[rows]
        se[rows] = metric(sub, f"{m}_stderr")[rows]
    table = pd.DataFrame(
        {
            "ablation": spec.id,
            "x": _x_values(sub, spec),
            "group": group,
            "metric": chosen,
            "value": value,
            "stderr": se,
            "y2_metric": spec.y2 or "",
            "y2": metric(sub, spec.y2) if spec.y2 else np.nan,
            "run_id": sub["run_id"],
            "run_name": tag(sub, "mlflow.runName").fillna("").astype(str),
            "experiment": sub.get("experiment", pd.Series("", index=sub.index)),
            "_start": sub.get("start_time", 0),
        }
    )
    table["_seed"] = param(sub, "train.seed").fillna("").astype(str)
    table = table[table["x"].notna() & table["value"].notna()]
    if table.empty:
        return pd.DataFrame(columns=cols)
    # reruns of a point (same seed) keep the newest; repeats over seeds are averaged
    table = table.sort_values("_start").groupby(["group", "x", "_seed"], sort=False).tail(1)
    table = _average_seeds(table)
    if spec.categorical:
        table = table.sort_values(["group", "value"])
    else:
        table = table.sort_values(["group", "x"])
    return table.reset_index(drop=True)[cols]
