"""Plotly figures of the ablations and base64 image embedding.

Each figure becomes a ``<div class="plotly-graph-div" id="ablation-<id>">`` (no plotly.js
inside: the page inlines plotly.js once, see :mod:`unmask.reporting.page`). Paper values from
``references.yaml`` that name the ablation are drawn as dotted horizontal reference lines. Each
point's uncertainty (``stderr``: ``fid_std``, ``<metric>_stderr`` or the spread over seeds) is
an ``error_y`` bar; the pipeline's own evaluate run (:func:`~unmask.reporting.ablations.
pipeline_point`) is a black star with its own error bar at its setting of the swept key, plus a
dashed horizontal line at its value.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pandas as pd

from unmask.reporting.ablations import ESTIMATOR_NOTES, AblationSpec, PipelinePoint, metric_label
from unmask.reporting.claims import references

__all__ = ["ablation_figure", "figure_div", "png_data_uri", "plot_id"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


def plot_id(ablation: str) -> str:
    """The DOM id of an ablation's plot."""
    return f"ablation-{ablation}"


def _paper_lines(spec: AblationSpec, metric: str) -> list[tuple[str, float]]:
    refs = references()
    out = []
    for v in refs.get("values", []):
        if v.get("ablation") == spec.id and v.get("metric") == metric:
            paper = refs["papers"][v["paper"]]["ref"]
            how = (" — the paper's eq. (5) bound, a different estimator"
                   if metric in ESTIMATOR_NOTES else "")
            for name, value in v["entries"].items():
                out.append((f"paper: {name}, {v['dataset']} ({paper}, {v['where']}){how}",
                            float(value)))
    return out


def _pipeline_traces(fig: Any, spec: AblationSpec, p: PipelinePoint, row: int) -> None:
    import plotly.graph_objects as go  # heavy: only when a figure is drawn

    label = (f"pipeline run {p.run_id[:8]} ({p.experiment}"
             f"{', ' + p.group if p.group else ''}"
             f"{', ' + p.num_samples + ' samples' if p.num_samples else ''})")
    if not p.comparable:
        label += f" — not comparable: {p.note}"
    err = (dict(type="data", array=[p.stderr], visible=True, color="black")
           if p.stderr == p.stderr else None)  # NaN: no error bar
    if p.x is not None:
        fig.add_trace(
            go.Scatter(
                x=[str(p.x) if spec.categorical else p.x],
                y=[p.value],
                mode="markers",
                name=label,
                error_y=err,
                marker=dict(symbol="star" if p.comparable else "star-open", size=15,
                            color="black"),
                hovertext=[f"run {p.run_id[:8]}"],
                meta={"pipeline_run": p.run_id},
            ),
            row=row,
            col=1,
            secondary_y=False,
        )
    fig.add_hline(y=p.value, line_dash="dash", line_color="black", line_width=1,
                  annotation_text=f"pipeline {p.metric} {p.value:.4g}", row=row, col=1,
                  annotation_position="bottom right", annotation_font_size=10)


def ablation_figure(spec: AblationSpec, table: pd.DataFrame,
                    pipeline: PipelinePoint | None = None) -> Any:
    """The plotly figure of one ablation's tidy table (see
    :func:`unmask.reporting.ablations.ablation_table`), with the pipeline's own run when
    given."""
    import plotly.graph_objects as go  # heavy: only when a figure is drawn
    from plotly.subplots import make_subplots  # heavy: as above

    metrics = list(dict.fromkeys(str(m) for m in table["metric"]))
    y2 = spec.y2 if spec.y2 and table["y2"].notna().any() else None
    n = len(metrics)
    fig = make_subplots(
        rows=n,
        cols=1,
        specs=[[{"secondary_y": y2 is not None}]] * n,
        subplot_titles=[f"{metric_label(m)} (lower is better)" for m in metrics] if n > 1 else None,
        vertical_spacing=0.12 if n > 1 else 0.02,
    )
    for i, (group, g) in enumerate(table.groupby("group", sort=False)):
        metric = str(g["metric"].iloc[0])
        row = metrics.index(metric) + 1
        color = _PALETTE[i % len(_PALETTE)]
        name = f"{group}" if group else metric
        err = (
            dict(type="data", array=g["stderr"].tolist(), visible=True)
            if g["stderr"].notna().any()
            else None
        )
        text = [f"run {r[:8]}" for r in g["run_id"]]
        if spec.categorical:
            fig.add_trace(
                go.Bar(
                    x=g["x"].astype(str),
                    y=g["value"],
                    name=name,
                    error_y=err,
                    marker_color=color,
                    text=[f"{v:.4g}" for v in g["value"]],
                    hovertext=text,
                ),
                row=row,
                col=1,
                secondary_y=False,
            )
        else:
            fig.add_trace(
                go.Scatter(
                    x=g["x"],
                    y=g["value"],
                    mode="lines+markers",
                    name=name,
                    error_y=err,
                    line=dict(color=color),
                    hovertext=text,
                ),
                row=row,
                col=1,
                secondary_y=False,
            )
        if y2:
            fig.add_trace(
                go.Scatter(
                    x=g["x"],
                    y=g["y2"],
                    mode="lines+markers",
                    name=f"{spec.y2}{f' [{group}]' if group else ''}",
                    line=dict(color=color, dash="dash"),
                    marker=dict(symbol="square"),
                ),
                row=row,
                col=1,
                secondary_y=True,
            )
    for row, metric in enumerate(metrics, start=1):
        for label, value in _paper_lines(spec, metric):
            fig.add_hline(
                y=value,
                line_dash="dot",
                line_color="#555",
                annotation_text=label,
                annotation_position="top left",
                annotation_font_size=10,
                row=row,
                col=1,
            )
        if pipeline is not None and pipeline.metric == metric:
            _pipeline_traces(fig, spec, pipeline, row)
        fig.update_yaxes(
            title_text=f"{metric_label(metric)} (lower is better)", row=row, col=1,
            secondary_y=False
        )
        if y2:
            fig.update_yaxes(title_text=spec.y2, row=row, col=1, secondary_y=True)
    fig.update_layout(
        title=spec.title,
        height=420 * n,
        margin=dict(l=60, r=30, t=60, b=50),
        template="plotly_white",
        legend_title_text=spec.group_key or "",
    )
    fig.update_xaxes(title_text=spec.x_label, type="log" if spec.log_x else None)
    return fig


def figure_div(fig: Any, div_id: str) -> str:
    """The figure as an HTML ``<div>`` + its ``Plotly.newPlot`` script, without plotly.js."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_height=f"{fig.layout.height or 420}px",
        config={"displaylogo": False},
    )


def png_data_uri(path: str | Path) -> str:
    """``data:image/png;base64,...`` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
