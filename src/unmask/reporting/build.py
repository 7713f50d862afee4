"""The one report writer: MLflow runs → one self-contained HTML page + its tables as CSV.

Two entry points, one code path (:func:`_write`):

* :func:`build_report` — the whole store (or some experiments): the root pipeline's ``report``
  stage (``python -m unmask.stages report``), ``unmask report`` and the sweeps. Writes::

    index.html          the page (plotly.js inlined, images as data: URIs, no network)
    fidelity.csv        the papers' claims, their numbers, ours and the verdict
    ablations.csv       every ablation's tidy table (ablation, x, group, metric, value, ...)
    runs.csv            run metadata (experiment, ablation, status, start, commit, device, ...)
    summary.json        flat numbers for ``dvc metrics`` (best value per ablation, verdicts)
    tables/<id>.csv     one ablation's table

  Sections: the fidelity table; one per ablation of :data:`~unmask.reporting.ablations.ABLATIONS`
  (a plot with each point's error bar and the pipeline's own evaluate run marked on it, its
  table, the points' sample grids and chains) — an ablation without runs is one "no runs" line;
  other tagged ablations as tables; the latest run of each pipeline stage with its metrics; the
  newest benchmark run (:mod:`unmask.reporting.benchmarks`); run metadata.

* :func:`write_pipeline_report` — one ``pipelines/<exp>/`` pipeline's page from the runs of its
  MLflow experiment (``index.html`` + ``metrics.csv``). Sections adapt to the runs: every stage
  run with its metrics, unavailable-metric reasons, verdict and sample images/texts from its
  artifacts; header tags (``unmask.task`` joint_seg / video, ``unmask.paper``); ablation plots and
  claims only for ablations that have runs (MDM-Prime's ℓ runs → the ℓ plot). With tracking
  disabled the page says so and shows no numbers.

The page holds no build time and no wall-clock metric; runs are ordered by start time, then
id: the same runs give the same bytes.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from unmask.reporting.ablations import ABLATIONS, ablation_table, pipeline_point
from unmask.reporting.benchmarks import performance_section
from unmask.reporting.claims import fidelity_table
from unmask.reporting.figures import png_data_uri
from unmask.reporting.page import esc, frame_table, kv_table, link, page
from unmask.reporting.runs import load_runs, no_runs, tag
from unmask.reporting.sections import (
    MAX_IMAGES,
    ablation_section,
    latest_per_name,
    metadata,
    other_ablations,
    params_section,
    runs_section,
)
from unmask.tracking import Tracker
from unmask.tracking import tracking_uri as store_uri

__all__ = ["build_report", "write_pipeline_report", "MAX_IMAGES"]

_HEADER_TAGS = {"unmask.paper": "paper", "unmask.task": "task"}


def build_report(
    tracking_uri: str | None,
    out_dir: str | os.PathLike[str],
    experiments: list[str] | None = None,
    *,
    title: str = "unmask — ablations and runs",
    figures: Mapping[str, str | os.PathLike[str]] | None = None,
    notes: Mapping[str, Any] | None = None,
    runs: pd.DataFrame | None = None,
) -> Path:
    """Read the runs from MLflow and write the store's report to ``out_dir`` (module docstring).

    Args:
        tracking_uri: the MLflow store (``None``: :func:`unmask.tracking.tracking_uri`).
        out_dir: output folder (created).
        experiments: experiment names to include (default: all).
        title: page title.
        figures: extra images (caption → PNG), e.g. the pipeline's own sample grid and chain.
        notes: extra key → value rows under the title (model, sampler, tokenizer, ...).
        runs: use this frame (as :func:`~unmask.reporting.runs.load_runs` returns) instead of
            querying MLflow (tracking disabled); artifacts are then not fetched.

    Returns:
        The path of ``index.html``.
    """
    uri: str | None = None
    if runs is None:
        uri = tracking_uri or store_uri()
        runs = load_runs(uri, experiments)
    return _write(Path(out_dir), title=title, uri=uri, store=uri or "not used", runs=runs,
                  figures=figures, notes=notes, experiment=None)


def write_pipeline_report(
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    tracking: Any,
    experiment: str,
    figures: Mapping[str, str | os.PathLike[str]] | None = None,
    notes: Mapping[str, Any] | None = None,
) -> Path:
    """Write a pipeline's page: ``out_dir/index.html`` and ``out_dir/metrics.csv`` (experiment,
    run, stage, metric, value of every metric on the page) from the finished runs of MLflow
    experiment ``experiment`` (module docstring). Call it after the stage's own run has ended:
    only FINISHED runs are read.

    Args:
        title: page title (params ``report.title``).
        tracking: the params ``tracking`` section (``enabled``, ``root``): the store is
            ``$MLFLOW_TRACKING_URI`` or the one under ``root`` (:func:`unmask.tracking.
            tracking_uri`). Disabled: a page that says so, an empty ``metrics.csv``.
        experiment: the pipeline's MLflow experiment (params ``tracking.experiment``).
        figures: optional local images (caption → PNG) shown on top.
        notes: optional key → value rows under the title.

    Returns:
        The path of ``index.html``.

    Raises:
        TrackingUnavailableError: the configured MLflow server does not answer.
    """
    out = Path(out_dir)
    if not tracking.enabled:
        return _write(out, title=title, uri=None, store="", runs=None, figures=figures,
                      notes=notes, experiment=experiment)
    uri = store_uri(tracking.root)
    Tracker(uri).check()  # a server that went away: one clear error, not a traceback
    # the store as params name it (not an absolute path): two checkouts write the same page
    store = os.environ.get("MLFLOW_TRACKING_URI") or str(tracking.root)
    try:
        runs = load_runs(uri, [experiment])
    except ValueError:  # no such experiment in the store yet: a page with no runs
        runs = no_runs()
    return _write(out, title=title, uri=uri, store=store, runs=latest_per_name(runs),
                  figures=figures, notes=notes, experiment=experiment)


def _figures(figures: Mapping[str, str | os.PathLike[str]] | None) -> str:
    if not figures:
        return ""
    return "<h2 id='samples'>Samples</h2>" + "".join(
        f'<figure><img src="{png_data_uri(p)}" alt="{esc(c)}"><figcaption>{esc(c)}'
        "</figcaption></figure>"
        for c, p in figures.items()
    )


def _uris(figures: Mapping[str, str | os.PathLike[str]] | None) -> frozenset[str]:
    return frozenset(png_data_uri(p) for p in (figures or {}).values())


def _header(title: str, runs: pd.DataFrame, meta: pd.DataFrame, store: str,
            experiment: str | None) -> list[str]:
    exps = sorted(set(runs["experiment"].dropna())) if not runs.empty else []
    commits = sorted(set(meta["git_commit"].dropna())) if not meta.empty else []
    where = (f"experiment <code>{esc(experiment)}</code>" if experiment is not None else
             f"{len(exps)} experiments ({esc(', '.join(exps)) or 'none'})")
    kinds = []
    for key, label in _HEADER_TAGS.items():
        values = sorted(set(tag(runs, key).dropna())) if not runs.empty else []
        if values:
            kinds.append(f"{label} <code>{esc(', '.join(values))}</code>")
    return [
        f"<h1>{esc(title)}</h1>",
        f"<p class='meta'>{len(runs)} finished runs in {where} · store <code>{esc(store)}</code>"
        f" · commits <code>{esc(', '.join(c[:12] for c in commits) or 'not recorded')}</code>"
        + "".join(f" · {k}" for k in kinds) + "</p>",
    ]


def _fidelity(fidelity: pd.DataFrame) -> str:
    classes = [str(v).replace(" ", "-") for v in fidelity["verdict"]]
    return (
        "<h2 id='fidelity'>Fidelity to the papers</h2>"
        "<p class='meta'>Each claim is checked on the runs of its ablation; "
        "the paper's numbers are transcribed in references.yaml with their table / section.</p>"
        + frame_table(
            fidelity.assign(
                source=[link(s, u)
                        for s, u in zip(fidelity["source"], fidelity["source_url"], strict=True)]
            ),
            ["claim", "ablation", "metric", "source", "paper", "ours", "verdict", "note"],
            classes,
        )
    )


def _write_tables(out: Path, runs: pd.DataFrame, tables: dict[str, pd.DataFrame],
                  fidelity: pd.DataFrame, meta: pd.DataFrame, flat: dict[str, float]) -> None:
    """The store page's CSVs and ``summary.json`` (module docstring)."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for name, t in tables.items():
        if not t.empty:
            t.to_csv(out / "tables" / f"{name}.csv", index=False)
    tidy = pd.concat([t for t in tables.values() if not t.empty]
                     or [pd.DataFrame(columns=next(iter(tables.values())).columns)])
    tidy.to_csv(out / "ablations.csv", index=False)
    fidelity.to_csv(out / "fidelity.csv", index=False)
    meta.to_csv(out / "runs.csv", index=False)
    summary: dict[str, Any] = dict(flat)
    for spec in ABLATIONS:
        t = tables[spec.id]
        if not t.empty:
            for m, tm in t.groupby("metric"):
                summary[f"{spec.id}/best_{m}"] = float(tm["value"].min())
            summary[f"{spec.id}/points"] = len(t)
    for row in fidelity.itertuples():
        summary[f"claim/{row.id}"] = row.verdict
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _write(out: Path, *, title: str, uri: str | None, store: str, runs: pd.DataFrame | None,
           figures: Mapping[str, str | os.PathLike[str]] | None,
           notes: Mapping[str, Any] | None, experiment: str | None) -> Path:
    """The page of ``runs`` (None: tracking disabled on a pipeline's page). ``experiment`` set:
    a pipeline's page (sections only for what its runs hold, ``metrics.csv``); else the store's
    page (every section, the CSV tables)."""
    from plotly.offline import get_plotlyjs  # heavy: only when a page is written

    own = experiment is not None
    out.mkdir(parents=True, exist_ok=True)
    if runs is None:
        body = [f"<h1>{esc(title)}</h1>",
                "<p class='no-runs tracking-disabled'>Tracking is disabled (<code>tracking."
                "enabled: false</code>): this pipeline logged no MLflow runs, so this page shows "
                "no metrics. Enable tracking and rerun the pipeline to see them here.</p>"]
        body += [kv_table(notes) if notes else "", _figures(figures)]
        _metrics_csv(out, pd.DataFrame(columns=["experiment", "run", "stage", "metric", "value"]))
        return _page(out, title, body, "")
    if not runs.empty:  # one order whatever the query returned
        runs = runs.sort_values([c for c in ("start_time", "run_id") if c in runs],
                                kind="stable").reset_index(drop=True)
    tables = {spec.id: ablation_table(runs, spec) for spec in ABLATIONS}
    fidelity = fidelity_table(tables)
    other_html, other_tables = other_ablations(runs)
    meta = metadata(runs)
    body = _header(title, runs, meta, store, experiment)
    body += [kv_table(notes) if notes else "", _figures(figures)]
    present = [s for s in ABLATIONS if not tables[s.id].empty]
    if own:
        fidelity = fidelity[fidelity["ablation"].isin([s.id for s in present])]
    if not (own and fidelity.empty):
        body.append(_fidelity(fidelity))
    with tempfile.TemporaryDirectory(prefix="unmask-report-") as tmp:
        runs_html, flat, table = runs_section(runs, uri=uri, tmp=Path(tmp), own=own,
                                              shown=_uris(figures))
        if own:
            body.append(runs_html)
        for spec in present if own else ABLATIONS:
            runs_of = runs[runs["ablation"] == spec.id] if not runs.empty else runs
            point = pipeline_point(runs, spec, tables[spec.id])
            body.append(ablation_section(spec, tables[spec.id], uri, Path(tmp), runs_of, point))
        body.append(other_html)
        if not own:
            body.append(runs_html)
            body.append(performance_section(uri, runs, Path(tmp)))
    body.append(
        "<h2 id='metadata'>Run metadata</h2>"
        + (frame_table(meta.assign(run_id=meta["run_id"].str[:12]).drop(columns="start"))
           if not meta.empty else "<p class='no-runs'>no runs</p>")
        + params_section(runs)
    )
    if own:
        _metrics_csv(out, table)
    else:
        _write_tables(out, runs, {**tables, **other_tables}, fidelity, meta, flat)
    plots = not own or bool(present)  # plotly.js (~4 MB) only on a page with plots
    return _page(out, title, body, get_plotlyjs() if plots else "")


def _metrics_csv(out: Path, shown: pd.DataFrame) -> None:
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(shown.columns))
        writer.writerows(shown.itertuples(index=False))


def _page(out: Path, title: str, body: list[str], plotly_js: str) -> Path:
    path = out / "index.html"
    path.write_text(page(title, "\n".join(b for b in body if b), plotly_js))
    return path
