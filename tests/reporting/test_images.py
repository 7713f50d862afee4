"""unmask.reporting.images: the figure helpers stage code imports — light, and laid out right."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from unmask.reporting.images import MASK_RGB, chain_strip, image_grid, save_png


def test_importing_images_loads_no_heavy_reporting_dependency():
    code = ("import sys, unmask.reporting.images; "
            "print(sorted(m for m in ('pandas', 'plotly', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_chain_strip_paints_masked_positions_and_puts_chains_in_rows():
    frames = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2)  # [F=2, B=3, h, w]
    masked = np.zeros_like(frames, dtype=bool)
    masked[0, 1, 0, 1] = True  # frame 0 of chain 1, pixel (0, 1)
    out = chain_strip(frames, masked)
    assert out.shape == (3, 2, 2, 2, 3)  # [B, F, h, w, rgb]
    assert tuple(out[1, 0, 0, 1]) == MASK_RGB
    v = frames[1, 2, 1, 0]  # an unmasked pixel keeps its grey value in all channels
    assert tuple(out[2, 1, 1, 0]) == (v, v, v)


def test_image_grid_places_each_tile_scaled(tmp_path):
    # 2 rows × 3 columns of 2×2 tiles, tile (r, c) filled with 10·r + c
    tiles = np.array([[np.full((2, 2), 10 * r + c, np.uint8) for c in range(3)]
                      for r in range(2)])
    scale, pad = 3, 2  # pad: the helper's gap between tiles (and the border)
    grid = image_grid(tiles, scale=scale)
    cell = 2 * scale + pad
    assert grid.shape == (pad + 2 * cell, pad + 3 * cell, 3)
    for r in range(2):
        for c in range(3):
            y, x = pad + r * cell, pad + c * cell
            block = grid[y:y + 2 * scale, x:x + 2 * scale]
            assert (block == 10 * r + c).all(), (r, c)
    assert (grid[0] == 255).all()  # the border is white
    path = save_png(grid, tmp_path / "sub" / "grid.png")
    assert np.array_equal(np.asarray(Image.open(path)), grid)


def test_image_grid_labels_widen_the_canvas():
    tiles = np.zeros((1, 2, 2, 2), np.uint8)
    plain, labelled = image_grid(tiles), image_grid(tiles, ["row"], col_labels=["a", "b"])
    assert labelled.shape[0] > plain.shape[0] and labelled.shape[1] > plain.shape[1]
    assert (labelled[:, :60] != 255).any()  # the row label is drawn left of the tiles
