"""COCO 2014 captions loader on a tiny fixture in the official layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmask.data.coco import COCOCaptions
from unmask.data.errors import CorruptFileError, DatasetLayoutError


def _write(root: Path, split: str = "val") -> list[int]:
    ids = [42, 9, 73]
    (root / f"{split}2014").mkdir(parents=True)
    (root / "annotations").mkdir()
    images = []
    for k, i in enumerate(ids):
        name = f"COCO_{split}2014_{i:012d}.jpg"
        arr = np.random.default_rng(k).integers(0, 256, (30, 50, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"{split}2014" / name)
        images.append({"id": i, "file_name": name, "height": 30, "width": 50})
    images.append({"id": 5, "file_name": "COCO_val2014_000000000005.jpg"})  # no caption: dropped
    anns = [
        {"id": 1, "image_id": 9, "caption": "A dog on a couch. "},
        {"id": 2, "image_id": 42, "caption": "Two cats."},
        {"id": 3, "image_id": 9, "caption": "A brown dog."},
        {"id": 4, "image_id": 73, "caption": "A red bus."},
    ]
    data = {"info": {}, "licenses": [], "images": images, "annotations": anns}
    (root / "annotations" / f"captions_{split}2014.json").write_text(json.dumps(data))
    return ids


def test_images_with_their_captions(tmp_path: Path) -> None:
    _write(tmp_path)
    ds = COCOCaptions(tmp_path, "val", image_size=24)
    items = list(ds)
    assert [it["image_id"] for it in items] == [9, 42, 73]
    assert items[0]["captions"] == ["A dog on a couch.", "A brown dog."]
    assert items[0]["key"] == "COCO_val2014_000000000009.jpg"
    assert items[1]["image"].shape == (24, 24, 3)


def test_corrupt_and_missing_images_are_skipped_by_name(tmp_path: Path) -> None:
    _write(tmp_path)
    bad = tmp_path / "val2014" / "COCO_val2014_000000000042.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "val2014" / "COCO_val2014_000000000073.jpg").unlink()
    ds = COCOCaptions(tmp_path, "val", image_size=None)
    assert [it["image_id"] for it in ds] == [9]
    assert [Path(s.path).name for s in ds.skipped] == [
        "COCO_val2014_000000000042.jpg",
        "COCO_val2014_000000000073.jpg",
    ]
    with pytest.raises(CorruptFileError, match="missing on disk"):
        COCOCaptions(tmp_path, "val", on_error="raise").load(2)


def test_layout_errors(tmp_path: Path) -> None:
    (tmp_path / "coco").mkdir()
    with pytest.raises(DatasetLayoutError, match="val2014/"):
        COCOCaptions(tmp_path / "coco", "val")
    _write(tmp_path / "c2")
    (tmp_path / "c2" / "annotations" / "captions_val2014.json").write_text('{"images": [')
    with pytest.raises(DatasetLayoutError, match="malformed caption json") as e:
        COCOCaptions(tmp_path / "c2", "val")
    assert "captions_val2014.json" in str(e.value)
    (tmp_path / "c2" / "train2014").mkdir()
    with pytest.raises(DatasetLayoutError, match="missing caption annotations"):
        COCOCaptions(tmp_path / "c2", "train")
