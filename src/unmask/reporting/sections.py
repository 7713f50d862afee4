"""The sections of the report page (:mod:`unmask.reporting.build` puts them together).

* :func:`runs_section` — the pipeline stages' runs (newest per run name), their metrics, what
  could not be computed and why, and (on a pipeline's page) their sample images from MLflow;
* :func:`ablation_section` / :func:`other_ablations` — one plot + table per ablation;
* :func:`metadata` / :func:`params_section` — run metadata and the params of the newest runs.

Nothing here reads a clock: the page is the same bytes for the same runs (DVC hashes it).
Wall-clock metrics (``train_seconds``, ``tokens_per_s``, ...) stay in MLflow, not on the page
(:func:`is_wall_clock`), except as an ablation's cost axis (eMIGM's t_min plot).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from unmask.reporting.ablations import (
    ABLATION_IDS,
    ESTIMATOR_NOTES,
    AblationSpec,
    PipelinePoint,
    ablation_table,
    metric_label,
)
from unmask.reporting.figures import ablation_figure, figure_div, plot_id, png_data_uri
from unmask.reporting.page import esc, frame_table, kv_table
from unmask.reporting.runs import download_artifact, fetch_artifact, list_artifacts, param, tag

__all__ = ["MAX_IMAGES", "MAX_RUN_FILES", "ablation_section", "is_wall_clock", "latest_per_name",
           "metadata", "other_ablations", "params_section", "runs_section", "stage_of"]

#: sample grids / chain strips shown per ablation (one per point, newest runs).
MAX_IMAGES = 8
#: PNG / text-sample artifacts shown per run on a pipeline's page.
MAX_RUN_FILES = 6
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
# durations and rates of the machine: two runs of the same code differ in them
_WALL_CLOCK = re.compile(r"seconds|elapsed|_per_s$|(^|[._])time($|[._])")
_TEXT_CHARS = 1500  # of a text-sample artifact shown on the page


def is_wall_clock(metric: str) -> bool:
    """Whether ``metric`` is a wall-clock duration or rate (left to MLflow, not on the page)."""
    return bool(_WALL_CLOCK.search(metric))


def stage_of(runs: pd.DataFrame) -> pd.Series:
    """The pipeline stage of each run: tag ``stage``, else ``unmask.stage`` (NaN if neither)."""
    stage = tag(runs, "stage")
    return stage.where(stage.notna(), tag(runs, "unmask.stage"))


def _order(runs: pd.DataFrame) -> pd.DataFrame:
    """Oldest first; ties broken by run id, so the order never depends on the query."""
    keys = [k for k in ("start_time", "run_id") if k in runs]
    return runs.sort_values(keys, kind="stable") if keys else runs


def latest_per_name(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each (experiment, run name), oldest first: a stage run again replaces
    its older run."""
    if runs.empty:
        return runs
    name = tag(runs, "mlflow.runName").fillna(runs["run_id"])
    runs = _order(runs.assign(_name=name))
    return runs.groupby(["experiment", "_name"], sort=False).tail(1).drop(columns="_name")


def _point_images(uri: str | None, table: pd.DataFrame, tmp: Path) -> str:
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


def metadata(runs: pd.DataFrame) -> pd.DataFrame:
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


def params_section(runs: pd.DataFrame) -> str:
    """The params of the newest run of each experiment (collapsed)."""
    if runs.empty:
        return ""
    parts = []
    for exp, g in _order(runs).groupby("experiment"):
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


def _run_files(uri: str, run_id: str, tmp: Path, shown: set[str]) -> str:
    """The run's PNG artifacts as figures (those already on the page, ``shown`` data URIs,
    skipped) and its text samples (``*samples*.txt``, first characters) as ``<pre>``; at most
    :data:`MAX_RUN_FILES`, in path order."""
    files = [p for p in list_artifacts(uri, run_id)
             if p.endswith(".png") or (p.endswith(".txt") and "samples" in Path(p).name)]
    parts = []
    for path in files[:MAX_RUN_FILES]:
        local = fetch_artifact(uri, run_id, path, tmp)
        if local is None:
            continue
        if path.endswith(".png"):
            data = png_data_uri(local)
            if data not in shown:
                parts.append(f'<figure><img src="{data}" alt="{esc(path)}">'
                             f"<figcaption>{esc(path)}</figcaption></figure>")
        else:
            text = local.read_text(errors="replace")
            more = " …" if len(text) > _TEXT_CHARS else ""
            parts.append(f"<h4>{esc(path)}</h4><pre>{esc(text[:_TEXT_CHARS])}{more}</pre>")
    return "".join(parts)


def _why_missing(r: pd.Series) -> str:
    """Metrics a run could not compute, with the reasons it tagged (never a number instead)."""
    why = {k[len("tags.unavailable."):]: v for k, v in r.items()
           if k.startswith("tags.unavailable.") and pd.notna(v)}
    # unmask.metrics.as_mlflow_params: <name>.unavailable_reason
    why.update({k[len("params."):-len(".unavailable_reason")]: v for k, v in r.items()
                if k.startswith("params.") and k.endswith(".unavailable_reason") and pd.notna(v)})
    if pd.notna(r.get("tags.unmask.fid_unavailable")):
        why["fid"] = r["tags.unmask.fid_unavailable"]
    if not why:
        return ""
    items = "; ".join(f"<b>{esc(k)}</b>: {esc(v)}" for k, v in sorted(why.items()))
    return f"<p class='meta unavailable'>Not computed — {items}</p>"


def runs_section(
    runs: pd.DataFrame, *, uri: str | None, tmp: Path, own: bool,
    shown: frozenset[str] = frozenset(),
) -> tuple[str, dict[str, float], pd.DataFrame]:
    """The runs of the pipeline stages, newest per (experiment, run name), each with its metrics
    (wall clock left out), the reasons a metric is missing and its ``verdict`` tag.

    Args:
        own: a pipeline's own page — every stage run of its experiment, ablation runs too
            (MDM-Prime's ℓ runs), with the runs' sample images / texts from MLflow; else (the
            store's page) only runs outside ablations, metrics only.
        shown: data URIs of images already on the page (the stage's own figures): not repeated.

    Returns:
        (html, the evaluate runs' metrics as ``{experiment}/{metric}``, the metrics shown as a
        table with columns experiment, run, stage, metric, value).
    """
    cols = ["experiment", "run", "stage", "metric", "value"]
    rows: list[tuple[str, str, str, str, float]] = []
    if runs.empty:
        return "", {}, pd.DataFrame(columns=cols)
    stage = stage_of(runs)
    keep = stage.notna() if own else stage.notna() & (runs["ablation"] == "")
    parts, flat = [], {}
    for _, r in latest_per_name(runs[keep].assign(_stage=stage[keep])).iterrows():
        name = r.get("tags.mlflow.runName")
        name = str(name) if pd.notna(name) else str(r["_stage"])
        metrics = {k[len("metrics."):]: float(v) for k, v in r.items()
                   if k.startswith("metrics.") and pd.notna(v)
                   and not is_wall_clock(k[len("metrics."):])}
        files = _run_files(uri, str(r["run_id"]), tmp, set(shown)) if own and uri else ""
        missing = _why_missing(r)
        if not (metrics or files or missing):
            continue
        metrics = dict(sorted(metrics.items()))
        rows += [(r["experiment"], name, r["_stage"], k, v) for k, v in metrics.items()]
        fid_params = {k[len("params."):]: v for k, v in r.items()
                      if k.startswith("params.fid.") and pd.notna(v)}
        verdict = r.get("tags.verdict")
        parts.append(
            f"<h3>{esc(r['experiment'])} · {esc(name)} "
            f"<span class='meta'>stage {esc(r['_stage'])} · run {esc(str(r['run_id'])[:12])}"
            "</span></h3>"
            + (f"<p class='verdict'><b>Verdict:</b> {esc(verdict)}</p>" if pd.notna(verdict)
               else "")
            + (kv_table(metrics) if metrics else "")
            + missing
            + (f"<details><summary>FID settings</summary>{kv_table(fid_params)}</details>"
               if fid_params else "")
            + files
        )
        if r["_stage"] == "evaluate":
            flat.update({f"{r['experiment']}/{k}": v for k, v in metrics.items()})
    if not parts:
        return "", {}, pd.DataFrame(columns=cols)
    title = "Pipeline runs" if own else "Pipeline runs (latest per stage)"
    return (f"<h2 id='pipeline'>{title}</h2>" + "".join(parts), flat,
            pd.DataFrame(rows, columns=cols))


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


def ablation_section(
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
        + _point_images(uri, table, tmp)
    )


def other_ablations(runs: pd.DataFrame) -> tuple[str, dict[str, pd.DataFrame]]:
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


