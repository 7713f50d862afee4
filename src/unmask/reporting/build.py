"""``build_report``: MLflow runs → one self-contained HTML page + its tables as CSV.

Output folder layout::

    index.html          the page (plotly.js inlined, images as data: URIs, no network)
    fidelity.csv        the papers' claims, their numbers, ours and the verdict
    ablations.csv       every ablation's tidy table (ablation, x, group, metric, value, ...)
    runs.csv            run metadata (experiment, ablation, status, commit, device, dataset)
    summary.json        flat numbers for ``dvc metrics`` (best value per ablation, verdicts)
    tables/<id>.csv     one ablation's table

Sections: the fidelity table; one per ablation of :data:`~unmask.reporting.ablations.ABLATIONS`
(a plot with each point's error bar and the pipeline's own evaluate run marked on it, its table,
the points' sample grids and unmasking-chain strips) — an ablation without runs is one "no runs"
line; other tagged ablations as tables; the latest run of each pipeline
stage with its metrics; the newest benchmark run (:mod:`unmask.reporting.benchmarks`); run
metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from unmask.reporting.ablations import (
    ABLATION_IDS,
    ABLATIONS,
    ESTIMATOR_NOTES,
    AblationSpec,
    PipelinePoint,
    ablation_table,
    metric_label,
    pipeline_point,
)
from unmask.reporting.benchmarks import performance_section
from unmask.reporting.claims import fidelity_table
from unmask.reporting.figures import ablation_figure, figure_div, plot_id, png_data_uri
from unmask.reporting.page import esc, frame_table, kv_table, link, page
from unmask.reporting.runs import download_artifact, load_runs, param, tag

__all__ = ["build_report", "MAX_IMAGES"]

#: sample grids / chain strips shown per ablation (one per point, newest runs).
MAX_IMAGES = 8
_GRID = ("samples/grid.png", "grid.png")
_CHAIN = ("samples/chain.png", "chain.png")
_META_COLS = [
    "run_id",
    "experiment",
    "run_name",
    "ablation",
    "stage",
    "status",
    "start",
    "git_commit",
    "device",
    "dataset",
    "dataset_manifest",
]


def _images(uri: str | None, table: pd.DataFrame, tmp: Path) -> str:
    if uri is None or table.empty:
        return ""
    figs = []
    for row in table.head(MAX_IMAGES).itertuples(index=False):
        label = f"{row.group + ' · ' if row.group else ''}x = {row.x}: {row.metric} {row.value:.4g}"
        for kind, cands in (("samples", _GRID), ("unmasking chain", _CHAIN)):
            p = download_artifact(uri, row.run_id.split(",")[0], cands, tmp)
            if p is not None:
                figs.append(
                    f'<figure><img src="{png_data_uri(p)}" alt="{esc(kind)}">'
                    f"<figcaption>{esc(label)} — {esc(kind)}</figcaption></figure>"
                )
    if not figs:
        return ""
    return (
        "<details open><summary>sample grids and unmasking chains of the points</summary>"
        + "".join(figs)
        + "</details>"
    )


def _metadata(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty:
        return pd.DataFrame(columns=_META_COLS)
    manifest = tag(runs, "unmask.dataset_manifest")
    manifest = manifest.where(manifest.notna(), param(runs, "fid.reference"))
    device = tag(runs, "unmask.device")
    device = device.where(device.notna(), param(runs, "device"))
    start = (
        pd.to_datetime(runs["start_time"], utc=True).dt.strftime("%Y-%m-%d %H:%M")
        if "start_time" in runs
        else ""
    )
    return pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "experiment": runs["experiment"],
            "run_name": tag(runs, "mlflow.runName"),
            "ablation": runs["ablation"],
            "stage": tag(runs, "stage").where(
                tag(runs, "stage").notna(), tag(runs, "unmask.stage")
            ),
            "status": runs["status"],
            "start": start,
            "git_commit": tag(runs, "git_commit").where(
                tag(runs, "git_commit").notna(), tag(runs, "mlflow.source.git.commit")
            ),
            "device": device,
            "dataset": param(runs, "data.dataset"),
            "dataset_manifest": manifest,
        }
    )[_META_COLS]


def _params_section(runs: pd.DataFrame) -> str:
    """The params of the newest run of each experiment (collapsed)."""
    if runs.empty:
        return ""
    parts = []
    for exp, g in runs.sort_values("start_time").groupby("experiment"):
        r = g.iloc[-1]
        p = {
            k[len("params.") :]: v for k, v in r.items() if k.startswith("params.") and pd.notna(v)
        }
        if p:
            parts.append(
                f"<details><summary>{esc(exp)}: params of run {esc(r['run_id'][:12])}"
                f"</summary><pre>{esc(json.dumps(dict(sorted(p.items())), indent=1))}"
                "</pre></details>"
            )
    return "".join(parts)


def _pipeline_section(runs: pd.DataFrame) -> tuple[str, dict[str, float]]:
    """The latest run of each (experiment, stage) outside the ablations, with its metrics."""
    if runs.empty:
        return "", {}
    stage = tag(runs, "stage")
    sub = runs[(runs["ablation"] == "") & stage.notna()].copy()
    if sub.empty:
        return "", {}
    sub["_stage"] = tag(sub, "stage")
    latest = sub.sort_values("start_time").groupby(["experiment", "_stage"]).tail(1)
    parts, flat = [], {}
    for row in latest.sort_values(["experiment", "start_time"]).itertuples():
        r = latest.loc[row.Index]
        metrics = {
            k[len("metrics.") :]: v
            for k, v in r.items()
            if k.startswith("metrics.") and pd.notna(v)
        }
        if not metrics:
            continue
        fid_params = {
            k[len("params.") :]: v
            for k, v in r.items()
            if k.startswith("params.fid.") and pd.notna(v)
        }
        parts.append(
            f"<h3>{esc(r['experiment'])} · {esc(r['_stage'])} "
            f"<span class='meta'>run {esc(r['run_id'][:12])}</span></h3>"
            + kv_table(dict(sorted(metrics.items())))
            + (
                f"<details><summary>FID settings</summary>{kv_table(fid_params)}</details>"
                if fid_params
                else ""
            )
        )
        if r["_stage"] == "evaluate":
            for k, v in metrics.items():
                flat[f"{r['experiment']}/{k}"] = float(v)
    if not parts:
        return "", {}
    return "<h2 id='pipeline'>Pipeline runs (latest per stage)</h2>" + "".join(parts), flat


def _pipeline_note(p: PipelinePoint | None, spec: AblationSpec) -> str:
    if p is None:
        return ""
    err = f" ± {p.stderr:.3g}" if p.stderr == p.stderr else ""
    where = (f"at {esc(spec.x_label)} = {esc(str(p.x))}" if p.x is not None
             else f"(its {esc(spec.x_label)} is not logged: dashed line only)")
    text = (f"Black star / dashed line: the pipeline's own evaluate run "
            f"<code>{esc(p.run_id[:12])}</code> ({esc(p.experiment)}"
            f"{', ' + esc(p.group) if p.group else ''}), {esc(p.metric)} {p.value:.4g}{err} "
            f"{where}.")
    if not p.comparable:
        text += f" <b>Not comparable</b>: {esc(p.note)}."
    return f"<p class='meta pipeline-point'>{text}</p>"


def _estimator_note(metrics: list[str]) -> str:
    notes = [f"<b>{esc(m)}</b>: {esc(ESTIMATOR_NOTES[m])}" for m in metrics if m in ESTIMATOR_NOTES]
    return f"<p class='meta estimator'>Estimator — {'; '.join(notes)}.</p>" if notes else ""


def _ablation_section(
    spec: AblationSpec, table: pd.DataFrame, uri: str | None, tmp: Path, runs_of: pd.DataFrame,
    pipeline: PipelinePoint | None = None,
) -> str:
    head = f"<h2 id='section-{spec.id}'>{esc(spec.title)}</h2>"
    if table.empty:
        return head + f"<p class='no-runs'>no runs (tag <code>unmask.ablation={spec.id}</code>)</p>"
    metric = str(table["metric"].iloc[0])
    note = (
        ""
        if metric in spec.metrics
        else (
            f"<p class='meta'>no run of this ablation logged {esc(spec.metrics[0])}; "
            f"the plot shows <b>{esc(metric)}</b> (the trials' primary metric) "
            "under its own name.</p>"
        )
    )
    note += _estimator_note(list(dict.fromkeys(str(m) for m in table["metric"])))
    if table["stderr"].notna().any():
        note += ("<p class='meta'>Error bars: each point's standard error (<code>fid_std</code>: "
                 "delete-half jackknife over its generated samples; else "
                 "<code>&lt;metric&gt;_stderr</code> or the spread over seeds).</p>")
    note += _pipeline_note(pipeline, spec)
    div = figure_div(ablation_figure(spec, table, pipeline), plot_id(spec.id))
    if len(runs_of) and "tags.unmask.fid_unavailable" in runs_of:
        why = runs_of["tags.unmask.fid_unavailable"].dropna()
        if len(why):
            note += (
                f"<p class='meta'>FID unavailable in {len(why)} run(s): "
                f"{esc('; '.join(sorted(set(why))))}</p>"
            )
    cols = [
        "x",
        "group",
        "metric",
        "value",
        "stderr",
        *(["y2"] if spec.y2 else []),
        "n_seeds",
        "run_id",
        "experiment",
    ]
    return (
        head
        + f"<p class='meta'>{esc(spec.description)}</p>"
        + note
        + div
        + f"<details><summary>table ({len(table)} points)</summary>"
        + frame_table(table.assign(metric=[metric_label(str(m)) for m in table["metric"]]), cols)
        + "</details>"
        + _images(uri, table, tmp)
    )


def _other_ablations(runs: pd.DataFrame) -> tuple[str, dict[str, pd.DataFrame]]:
    """Tagged ablations without a plot spec (sampler, top_p, ...): one table each."""
    if runs.empty:
        return "", {}
    others = sorted(set(runs["ablation"]) - set(ABLATION_IDS) - {""})
    parts, tables = [], {}
    for a in others:
        sub = runs[runs["ablation"] == a]
        points = tag(sub, "unmask.point").fillna("")
        t = ablation_table(
            sub.assign(**{"params.point.__label": points}),
            AblationSpec(a, a, ("__label",), a, categorical=True),
        )
        if t.empty:
            continue
        tables[a] = t
        parts.append(
            f"<h3 id='section-{esc(a)}'>{esc(a)}</h3>"
            + frame_table(t, ["x", "metric", "value", "run_id", "experiment"])
        )
    if not parts:
        return "", {}
    return "<h2>Other ablations</h2>" + "".join(parts), tables


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
    """Read the runs from MLflow and write the report to ``out_dir`` (see the module docstring).

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
    from plotly.offline import get_plotlyjs

    from unmask.tracking import tracking_uri as default_uri

    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    uri: str | None = None
    if runs is None:
        uri = tracking_uri or default_uri()
        runs = load_runs(uri, experiments)

    tables = {spec.id: ablation_table(runs, spec) for spec in ABLATIONS}
    fidelity = fidelity_table(tables)
    other_html, other_tables = _other_ablations(runs)
    all_tables = {**tables, **other_tables}
    for name, t in all_tables.items():
        if not t.empty:
            t.to_csv(out / "tables" / f"{name}.csv", index=False)
    tidy = pd.concat(
        [t for t in all_tables.values() if not t.empty]
        or [pd.DataFrame(columns=next(iter(tables.values())).columns)]
    )
    tidy.to_csv(out / "ablations.csv", index=False)
    fidelity.to_csv(out / "fidelity.csv", index=False)
    meta = _metadata(runs)
    meta.to_csv(out / "runs.csv", index=False)

    pipeline_html, pipeline_flat = _pipeline_section(runs)
    summary: dict[str, Any] = dict(pipeline_flat)
    for name, t in tables.items():
        if not t.empty:
            for m, tm in t.groupby("metric"):
                summary[f"{name}/best_{m}"] = float(tm["value"].min())
            summary[f"{name}/points"] = len(t)
    for row in fidelity.itertuples():
        summary[f"claim/{row.id}"] = row.verdict
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

    exps = sorted(set(runs["experiment"].dropna())) if not runs.empty else []
    commits = sorted(set(meta["git_commit"].dropna())) if not meta.empty else []
    body = [
        f"<h1>{esc(title)}</h1>",
        f"<p class='meta'>{len(runs)} finished runs in "
        f"{len(exps)} experiments ({esc(', '.join(exps)) or 'none'}) · store "
        f"<code>{esc(uri or 'not used')}</code> · commits "
        f"<code>{esc(', '.join(c[:12] for c in commits) or 'not recorded')}</code></p>",
    ]
    if notes:
        body.append(kv_table(notes))
    if figures:
        body.append(
            "<h2 id='samples'>Samples</h2>"
            + "".join(
                f'<figure><img src="{png_data_uri(p)}" alt="{esc(c)}"><figcaption>{esc(c)}'
                "</figcaption></figure>"
                for c, p in figures.items()
            )
        )
    classes = [str(v).replace(" ", "-") for v in fidelity["verdict"]]
    body.append(
        "<h2 id='fidelity'>Fidelity to the papers</h2>"
        "<p class='meta'>Each claim is checked on the runs of its ablation; "
        "“not transcribed”: the paper's numbers are not in references.yaml yet.</p>"
        + frame_table(
            fidelity.assign(
                source=[
                    link(s, u)
                    for s, u in zip(fidelity["source"], fidelity["source_url"], strict=True)
                ]
            ),
            ["claim", "ablation", "metric", "source", "paper", "ours", "verdict", "note"],
            classes,
        )
    )
    with tempfile.TemporaryDirectory(prefix="unmask-report-") as tmp:
        for spec in ABLATIONS:
            runs_of = runs[runs["ablation"] == spec.id] if not runs.empty else runs
            point = pipeline_point(runs, spec, tables[spec.id])
            body.append(_ablation_section(spec, tables[spec.id], uri, Path(tmp), runs_of, point))
        body.append(other_html)
        body.append(pipeline_html)
        body.append(performance_section(uri, runs, Path(tmp)))
    body.append(
        "<h2 id='metadata'>Run metadata</h2>"
        + (
            frame_table(meta.assign(run_id=meta["run_id"].str[:12]))
            if not meta.empty
            else "<p class='no-runs'>no runs</p>"
        )
        + _params_section(runs)
    )
    html = page(title, "\n".join(b for b in body if b), get_plotlyjs())
    path = out / "index.html"
    path.write_text(html)
    return path
