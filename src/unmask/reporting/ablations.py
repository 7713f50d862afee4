"""What each ablation plots: its x (a swept param), its grouping and its metric.

:data:`ABLATIONS` lists the report's sections in order. :func:`ablation_table` turns the runs of
one ablation (see :mod:`unmask.reporting.runs`) into a tidy table, one row per point::

    ablation, x, group, metric, value, stderr, y2_metric, y2, run_id, run_name, experiment

The metric is FID whenever a run of the ablation logged ``fid``; otherwise the runs' primary
metric (``unmask.primary_metric``, e.g. ``hist_tv``) is plotted *under its own name* — a
proxy is never labelled FID. Several runs of the same point keep the newest. ``stderr`` is the
point's logged ``<metric>_stderr``, else ``<metric>_std`` (``fid_std``: the FID's standard error
from :mod:`unmask.metrics.heldout`), else the spread over training seeds; it is drawn as error
bars.

:func:`pipeline_point` finds the default pipeline's ``evaluate`` run that an ablation is
compared with (its FID on the same reference, at the pipeline's own setting of the swept key),
so the report can draw it on the ablation's curve.

Likelihood metrics carry an estimator note (:data:`ESTIMATOR_NOTES`): the MDM-Prime perplexities
here are the continuous-time ELBO over sub-tokens (:mod:`unmask.prime.likelihood`), not the
paper's eq. (5) bound, so they are not the numbers of MDM-Prime Tab. 2 computed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from unmask.reporting.runs import metric, param, tag

__all__ = [
    "AblationSpec",
    "ABLATIONS",
    "ABLATION_IDS",
    "ESTIMATOR_NOTES",
    "PipelinePoint",
    "ablation_table",
    "choose_metric",
    "estimator_note",
    "metric_label",
    "pipeline_point",
]

_PRIME_ELBO = (
    "continuous-time ELBO over sub-tokens (sum of per-digit marginal cross-entropies, "
    "unmask.prime.likelihood) — an upper bound, but NOT the estimator of MDM-Prime eq. (5) "
    "(per-token joint over its sub-tokens): not comparable with MDM-Prime Tab. 2 as the same "
    "estimator"
)
#: metric → which estimator produced it (shown beside the metric in tables, plots, claims).
ESTIMATOR_NOTES: dict[str, str] = {
    "ppl": "exp(NELBO per token), NELBO = " + _PRIME_ELBO,
    "perplexity": "exp(NELBO per token), NELBO = " + _PRIME_ELBO,
    "bits_per_dim": "NELBO / (dims · ln 2), NELBO = " + _PRIME_ELBO,
}
_SHORT_LABELS = {
    "ppl": "ELBO-PPL (sub-token ELBO, not MDM-Prime eq. 5)",
    "perplexity": "ELBO-PPL (sub-token ELBO, not MDM-Prime eq. 5)",
    "bits_per_dim": "ELBO bits/dim (sub-token ELBO, not MDM-Prime eq. 5)",
    "fid": "FID vs real held-out images",
}


def estimator_note(metrics: list[str] | tuple[str, ...]) -> str:
    """The fidelity table's note for a claim on ``metrics`` ('' when no estimator note applies)."""
    if not any(m in ESTIMATOR_NOTES for m in metrics):
        return ""
    return ("ours: " + _PRIME_ELBO + "; the paper's numbers: its eq. (5) bound (Tab. 2 values "
            "are upper bounds, ≤) — compare the direction over ℓ, not the values")


def metric_label(metric: str) -> str:
    """A metric's name with its estimator, for axis titles and table headers."""
    return _SHORT_LABELS.get(metric, metric)


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
        "ELBO perplexity vs sub-token count ℓ (MDM-Prime; our sub-token ELBO, not eq. 5)",
        ("prime.l", "ell", "prime.ell"),
        "sub-tokens per token ℓ",
        group_key="experiment",
        per_group_metric=True,
        metrics=("ppl", "perplexity", "bits_per_dim"),
        fallbacks=(),
        description="ELBO perplexity (bits/dim for pixel models) of one model per ℓ "
        "(ℓ = 1 is plain MDM); repeats over training seeds are averaged (± standard error). "
        "Estimator: the " + _PRIME_ELBO + ".",
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
        err = metric(sub, f"{m}_stderr")
        se[rows] = err.where(err.notna(), metric(sub, f"{m}_std"))[rows]
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


@dataclass(frozen=True)
class PipelinePoint:
    """The pipeline's evaluate run as one point of an ablation's plot.

    Attributes:
        x: its value of the swept key (``None``: unknown; drawn as a horizontal line only).
        group: its curve (e.g. its sampler), ``""`` if the ablation has no groups.
        value / stderr: the metric and its uncertainty (``<metric>_stderr`` / ``_std``).
        comparable: same FID reference and sample count as the ablation's runs.
        note: why it is not comparable (empty when it is).
    """

    run_id: str
    experiment: str
    metric: str
    x: Any
    group: str
    value: float
    stderr: float
    num_samples: str
    comparable: bool
    note: str = ""


def _mode(s: pd.Series) -> str | None:
    s = s.dropna().astype(str)
    return str(s.mode().iloc[0]) if len(s) else None


def pipeline_point(
    runs: pd.DataFrame, spec: AblationSpec, table: pd.DataFrame
) -> PipelinePoint | None:
    """The pipeline evaluate run to draw on ``spec``'s plot: among the runs outside ablations
    tagged ``stage=evaluate`` that logged the ablation's metric, the newest with the same
    ``fid.reference`` as the ablation's runs (else the newest, marked not comparable)."""
    if table.empty or runs.empty or "ablation" not in runs:
        return None
    m = str(table["metric"].iloc[0])
    stage = tag(runs, "stage").where(tag(runs, "stage").notna(), tag(runs, "unmask.stage"))
    cands = runs[(runs["ablation"] == "") & (stage == "evaluate") & metric(runs, m).notna()]
    if cands.empty:
        return None
    if "start_time" in cands:
        cands = cands.sort_values("start_time")
    trials = runs[runs["run_id"].isin(",".join(table["run_id"]).split(","))]
    ref, n = _mode(param(trials, "fid.reference")), _mode(param(trials, "fid.num_samples"))
    same_ref = cands[param(cands, "fid.reference").astype(str) == ref] if ref else cands.iloc[:0]
    row = (same_ref if len(same_ref) else cands).iloc[-1:]
    p_ref, p_n = _mode(param(row, "fid.reference")), _mode(param(row, "fid.num_samples"))
    notes = []
    if ref and p_ref != ref:
        notes.append(f"FID reference {p_ref} vs the trials' {ref}")
    if n and p_n and p_n != n:
        notes.append(f"{p_n} samples vs the trials' {n} (FID depends on the sample count)")
    if any(k.startswith(("train.", "emigm.")) for k in spec.x_keys):  # one model per point
        steps, p_steps = _mode(param(trials, "train.steps")), _mode(param(row, "train.steps"))
        if steps and p_steps and steps != p_steps:
            notes.append(f"trained {p_steps} steps vs the trials' {steps}")
    if spec.x_metric and metric(row, spec.x_metric).isna().all():
        # the evaluate stage logs the sampler's NFE as sample_<name> (a trial logs <name>)
        row = row.assign(**{f"metrics.{spec.x_metric}": metric(row, f"sample_{spec.x_metric}")})
    xv = _x_values(row, spec).iloc[0]
    if pd.isna(xv):
        xv = None
    if spec.group_key and spec.group_key != "experiment":
        group = str(param(row, spec.group_key).fillna("—").iloc[0])
    else:
        group = ""
    err = metric(row, f"{m}_stderr")
    err = err.where(err.notna(), metric(row, f"{m}_std"))
    return PipelinePoint(
        run_id=str(row["run_id"].iloc[0]),
        experiment=str(row["experiment"].iloc[0]) if "experiment" in row else "",
        metric=m,
        x=xv,
        group=group,
        value=float(metric(row, m).iloc[0]),
        stderr=float(err.iloc[0]),
        num_samples=p_n or "",
        comparable=not notes,
        note="; ".join(notes),
    )
