"""Cityscapes loader on a tiny fixture in the official leftImg8bit/gtFine layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmask.data.cityscapes import CATEGORY_NAMES, LABEL_TO_CATEGORY, Cityscapes
from unmask.data.errors import CorruptFileError, DatasetLayoutError


def _pair(root: Path, city: str, frame: int, ids: np.ndarray, split: str = "train") -> Path:
    stem = f"{city}_000000_{frame:06d}"
    img_dir = root / "leftImg8bit" / split / city
    gt_dir = root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(frame).integers(0, 256, (*ids.shape, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(img_dir / f"{stem}_leftImg8bit.png")
    Image.fromarray(ids.astype(np.uint8)).save(gt_dir / f"{stem}_gtFine_labelIds.png")
    return gt_dir / f"{stem}_gtFine_labelIds.png"


def _ids(h: int = 64, w: int = 128) -> np.ndarray:
    """Horizontal bands: sky / building / road / car, plus a person box."""
    ids = np.zeros((h, w), np.uint8)
    ids[: h // 4] = 23  # sky → 5
    ids[h // 4 : h // 2] = 11  # building → 2
    ids[h // 2 : 3 * h // 4] = 7  # road → 1
    ids[3 * h // 4 :] = 26  # car → 7
    ids[h // 2 : h // 2 + 8, :8] = 24  # person → 6
    return ids


def test_official_category_table() -> None:
    assert CATEGORY_NAMES[1:] == (
        "flat",
        "construction",
        "object",
        "nature",
        "sky",
        "human",
        "vehicle",
    )
    assert sorted(LABEL_TO_CATEGORY) == [-1, *range(34)]
    cat = {CATEGORY_NAMES[LABEL_TO_CATEGORY[i]] for i in (9, 10)}  # parking, rail track
    assert cat == {"flat"} and CATEGORY_NAMES[LABEL_TO_CATEGORY[-1]] == "vehicle"
    assert CATEGORY_NAMES[LABEL_TO_CATEGORY[18]] == "object"  # polegroup


def test_pairs_resized_as_di(tmp_path: Path) -> None:
    _pair(tmp_path, "aachen", 19, _ids())
    _pair(tmp_path, "bochum", 3, np.full((64, 128), 255, np.uint8))  # -1 'license plate' wrap
    ds = Cityscapes(tmp_path, "train", image_size=(32, 64), mask_size=(8, 16))
    items = list(ds)
    assert [it["key"] for it in items] == [
        "aachen/aachen_000000_000019",
        "bochum/bochum_000000_000003",
    ]
    img, mask = items[0]["image"], items[0]["mask"]
    assert img.shape == (32, 64, 3) and mask.shape == (8, 16) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask[:, 4], [5, 5, 2, 2, 1, 1, 7, 7])
    assert mask[4, 0] == 6  # the person box survives the nearest downsampling
    assert (items[1]["mask"] == 7).all()
    full = Cityscapes(tmp_path, "train", image_size=None, mask_size=None)[0]
    assert full["image"].shape == (64, 128, 3) and full["mask"].shape == (64, 128)


def test_bad_mask_values_and_missing_mask_are_skipped(tmp_path: Path) -> None:
    ids = _ids()
    ids[0, 0] = 40  # not a Cityscapes label id
    bad = _pair(tmp_path, "aachen", 1, ids)
    missing = _pair(tmp_path, "aachen", 2, _ids())
    missing.unlink()
    _pair(tmp_path, "aachen", 3, _ids())
    ds = Cityscapes(tmp_path, "train")
    assert len(list(ds)) == 1 and ds.num_skipped == 2
    assert ds.skipped[0].path == str(bad) and "[40]" in ds.skipped[0].reason
    assert ds.skipped[1].path == str(missing)
    with pytest.raises(CorruptFileError, match="outside the Cityscapes table"):
        Cityscapes(tmp_path, "train", on_error="raise").load(0)


def test_layout_errors(tmp_path: Path) -> None:
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="gtFine folder") as e:
        Cityscapes(tmp_path, "val")
    assert str(tmp_path / "gtFine" / "val") in str(e.value)
    (tmp_path / "gtFine" / "val").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="no \\*_leftImg8bit.png"):
        Cityscapes(tmp_path, "val")
