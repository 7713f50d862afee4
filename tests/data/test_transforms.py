"""ADM center crop, nearest mask resizing and decode errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unmask.data.errors import CorruptFileError
from unmask.data.transforms import (
    center_crop_arr,
    from_unit_range,
    hflip,
    load_label_map,
    load_rgb,
    resize_mask,
    to_unit_range,
)


def _blocky(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An RGB image made of constant 2×2 blocks: a BOX halving reproduces the blocks exactly."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 2, w // 2, 3), dtype=np.uint8)
    return small.repeat(2, axis=0).repeat(2, axis=1), small


@pytest.mark.parametrize("size", [256, 512])
def test_center_crop_halves_with_box_then_crops_centre(size: int) -> None:
    # H = 2·size, W = 3·size: one BOX halving gives (size, 1.5·size) = the blocks exactly, the
    # bicubic step is then a same-size no-op and the crop takes the central columns.
    full, small = _blocky(2 * size, 3 * size)
    out = center_crop_arr(Image.fromarray(full), size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    left = (small.shape[1] - size) // 2
    np.testing.assert_array_equal(out, small[:, left : left + size])


def test_center_crop_tall_image_crops_vertically_and_upscales_small() -> None:
    rng = np.random.default_rng(1)
    tall = rng.integers(0, 256, (300, 256, 3), dtype=np.uint8)
    out = center_crop_arr(Image.fromarray(tall), 256)  # no halving, no resize: pure crop
    np.testing.assert_array_equal(out, tall[22:278])
    small = center_crop_arr(Image.fromarray(tall[:100, :80]), 256)  # bicubic upsampling path
    assert small.shape == (256, 256, 3)


def test_resize_mask_nearest_keeps_label_values() -> None:
    mask = np.zeros((64, 128), dtype=np.uint8)
    mask[:32, :64] = 3
    mask[32:, 64:] = 7
    out = resize_mask(mask, (32, 64))
    assert out.shape == (32, 64) and set(np.unique(out)) <= {0, 3, 7}
    np.testing.assert_array_equal(out, mask[::2, ::2])


def test_load_rgb_reports_truncated_file_by_name(tmp_path) -> None:
    good = tmp_path / "a.jpg"
    Image.fromarray(np.full((16, 16), 100, np.uint8)).save(good)  # grayscale → converted
    assert load_rgb(good).mode == "RGB"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(CorruptFileError, match="bad.jpg"):
        load_rgb(bad)
    with pytest.raises(CorruptFileError, match="not-an-image"):
        load_rgb(b"hello", name="not-an-image")
    with pytest.raises(CorruptFileError, match="single-channel"):
        load_label_map(_rgb_png(tmp_path))


def _rgb_png(tmp_path) -> bytes:
    p = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p)
    return p.read_bytes()


def test_hflip_and_unit_range_round_trip() -> None:
    x = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(hflip(x)[:, :, 0], x[:, :, -1])
    np.testing.assert_array_equal(hflip(x[..., 0], channels_last=False)[..., 0], x[:, :, -1, 0])
    np.testing.assert_array_equal(from_unit_range(to_unit_range(x)), x)
