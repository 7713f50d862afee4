"""Figure helpers for stage code: sample grids and unmasking-chain strips as PNGs.

Light on purpose (numpy + PIL only): sample/evaluate stages import it, so it must not pull in
pandas, plotly or MLflow.

* :func:`image_grid`: uint8 images [R, C, h, w(, 3)] → one PNG-ready array, rows labelled.
* :func:`chain_strip`: an unmasking chain (decoded frames with [MASK] shown in colour).
* :func:`save_png`: write an array as an optimised PNG (parents created).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["MASK_RGB", "image_grid", "chain_strip", "save_png"]

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
    """Save ``array`` (uint8 HxW or HxWx3) as a PNG at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, optimize=True)
    return path
