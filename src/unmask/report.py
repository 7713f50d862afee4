"""Figures and the self-contained HTML report of the default pipeline.

* :func:`image_grid`: uint8 images [R, C, h, w(, 3)] → one PNG-ready array, rows labelled.
* :func:`chain_strip`: an unmasking chain (decoded frames with [MASK] shown in colour).
* :func:`write_report`: ``index.html`` (inline base64 PNGs, metrics table, params, git commit)
  and ``metrics.csv``.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["MASK_RGB", "image_grid", "chain_strip", "save_png", "write_report"]

MASK_RGB = (64, 110, 200)  # colour of [MASK] positions in chain strips
_PAD, _LABEL_W = 2, 84


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a


def image_grid(
    images: np.ndarray,
    row_labels: Sequence[str] | None = None,
    *,
    scale: int = 4,
    col_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Tile uint8 images [R, C, h, w] (or [R, C, h, w, 3]) into an RGB array, upscaled by
    ``scale`` (nearest), with optional text labels left of each row / above each column."""
    rows, cols, h, w = images.shape[:4]
    ch, cw = h * scale + _PAD, w * scale + _PAD
    left = _LABEL_W if row_labels is not None else 0
    top = 14 if col_labels is not None else 0
    canvas = np.full((top + rows * ch + _PAD, left + cols * cw + _PAD, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            tile = _rgb(images[r, c]).repeat(scale, 0).repeat(scale, 1)
            y, x = top + _PAD + r * ch, left + _PAD + c * cw
            canvas[y : y + h * scale, x : x + w * scale] = tile
    if row_labels is None and col_labels is None:
        return canvas
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for r, label in enumerate(row_labels or []):
        draw.text((4, top + _PAD + r * ch + (h * scale) // 2 - 6), str(label), fill=(0, 0, 0))
    for c, label in enumerate(col_labels or []):
        draw.text((left + _PAD + c * cw + 2, 1), str(label), fill=(0, 0, 0))
    return np.asarray(img)


def chain_strip(frames: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """Grayscale frames [F, B, h, w] uint8 (decoded; any value at masked positions) and a bool
    mask of the same shape → RGB frames [B, F, h, w, 3] with [MASK] in :data:`MASK_RGB` (for
    :func:`image_grid`: one row per chain, time left to right)."""
    rgb = np.repeat(frames[..., None], 3, axis=-1)
    rgb[masked] = MASK_RGB
    return np.moveaxis(rgb, 0, 1)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, optimize=True)
    return path


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
