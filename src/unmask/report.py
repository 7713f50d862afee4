"""Legacy per-pipeline HTML page (being replaced by
:func:`unmask.reporting.build.write_pipeline_report`; figure helpers live in
:mod:`unmask.reporting.images`).

* :func:`write_report`: ``index.html`` (inline base64 PNGs, metrics table, params, git commit)
  and ``metrics.csv``.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(rows: Mapping[str, Any]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in rows.items()
    )
    return f"<table>{body}</table>"


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    metrics: Mapping[str, Any],
    params: Mapping[str, Any],
    figures: Mapping[str, Path],
    commit: str,
    notes: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/index.html`` (self-contained) and ``out_dir/metrics.csv``.

    Args:
        metrics: flat metric name → value.
        params: the pipeline params (nested; shown as YAML-like JSON).
        figures: caption → PNG path (inlined as base64).
        commit: the git commit the report was built from.
        notes: extra key → value rows shown under the title (e.g. sampler info).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "value"])
        writer.writerows(metrics.items())
    figs = "".join(
        f'<figure><img src="{_data_uri(Path(p))}" alt="{html.escape(cap)}">'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for cap, p in figures.items()
    )
    # no build time on the page: DVC hashes it, a rerun must write the same bytes
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td {{ border: 1px solid #ccc; padding: 2px 10px; font-size: 0.9em; }}
td:last-child {{ font-family: monospace; text-align: right; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }}
img {{ image-rendering: pixelated; border: 1px solid #ddd; }}
pre {{ background: #f6f6f6; padding: 1em; font-size: 0.8em; overflow-x: auto; }}
.meta {{ color: #666; font-size: 0.85em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">commit <code>{html.escape(commit)}</code></p>
{_table(notes or {})}
<h2>Samples</h2>
{figs}
<h2>Metrics</h2>
{_table(metrics)}
<h2>Parameters</h2>
<pre>{html.escape(json.dumps(params, indent=2))}</pre>
</body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page)
    return path
