"""MS-COCO 2014 images with their captions (the text condition of DI's COCO experiments).

Reads the official layout: ``train2014/`` and ``val2014/`` image folders next to
``annotations/captions_{train,val}2014.json`` (the standard COCO caption json: an ``images`` list
with ``id`` and ``file_name``, an ``annotations`` list with ``image_id`` and ``caption``). The text
encoder that turns captions into a condition is pluggable and lives elsewhere; this loader only
yields ``(image, [captions])``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from unmask.data.base import CroppedImageSplit
from unmask.data.errors import DatasetLayoutError, require_dir, require_file

__all__ = ["COCOCaptions", "LAYOUT", "read_captions"]

LAYOUT = """
<root>/
  train2014/COCO_train2014_000000000009.jpg, ...
  val2014/COCO_val2014_000000000042.jpg, ...
  annotations/captions_train2014.json
  annotations/captions_val2014.json
      {"images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", ...}, ...],
       "annotations": [{"image_id": 9, "id": 1, "caption": "..."}, ...]}
"""
_NAME = "COCO 2014 captions"


def read_captions(path: str | Path) -> list[tuple[int, str, list[str]]]:
    """Parse a COCO caption json: ``[(image_id, file_name, [captions])]`` sorted by image id.

    Images without any caption are dropped. Captions keep the json's order, stripped.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        caps: dict[int, list[str]] = defaultdict(list)
        for ann in data["annotations"]:
            caps[int(ann["image_id"])].append(str(ann["caption"]).strip())
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DatasetLayoutError(
            _NAME, path, f"malformed caption json ({type(e).__name__}: {e})", LAYOUT
        ) from None
    return [(i, images[i], caps[i]) for i in sorted(images) if caps.get(i)]


class COCOCaptions(CroppedImageSplit):
    """COCO 2014 ``(image, captions)`` pairs.

    Args:
        root: the COCO folder (see :data:`LAYOUT`).
        split: ``"train"`` or ``"val"``.
        image_size: ADM center-crop size; None keeps the decoded image.
        on_error: ``"skip"`` or ``"raise"`` on a corrupt image.

    Items: ``{"key": file name, "image_id": int, "image": uint8 [S, S, 3], "captions": [str]}``.
    """

    split_label = "COCO"

    def _open(self) -> None:
        split = self.split
        self.root = require_dir(_NAME, self.root, LAYOUT, "dataset root")
        self.image_dir = require_dir(_NAME, self.root / f"{split}2014", LAYOUT, f"{split}2014/")
        ann = self.root / "annotations" / f"captions_{split}2014.json"
        self.records = read_captions(require_file(_NAME, ann, LAYOUT, "caption annotations"))
        if not self.records:
            raise DatasetLayoutError(_NAME, ann, "no captioned images", LAYOUT)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> dict[str, Any]:
        """Item ``index``; raises :class:`CorruptFileError` for a missing or corrupt image."""
        image_id, name, captions = self.records[index]
        arr = self._read_image(self.image_dir / name,
                               "listed in the annotations but missing on disk")
        return {"key": name, "image_id": image_id, "image": arr, "captions": list(captions)}
