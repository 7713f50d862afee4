"""Cityscapes image / segmentation pairs with DI's 8 categories.

Reads the official layout (``leftImg8bit_trainvaltest`` + ``gtFine_trainvaltest`` unpacked into
one root). Label ids of ``*_gtFine_labelIds.png`` are mapped to the 8 *categories* of the
official cityscapesScripts table (``helpers/labels.py``: the ``catId`` column), which is what DI
models jointly with the image. The image is resized bicubically (default 256×512, the 32×64
token grid of an f8 tokenizer) and the category mask with nearest neighbour (default 32×64).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unmask.data.errors import (
    CorruptFileError,
    DatasetLayoutError,
    OnError,
    SkipsCorruptFiles,
    require_dir,
)
from unmask.data.transforms import load_label_map, load_rgb, resize_image, resize_mask

__all__ = [
    "Cityscapes",
    "LAYOUT",
    "CATEGORY_NAMES",
    "LABEL_TO_CATEGORY",
    "NUM_CATEGORIES",
    "labels_to_categories",
]

LAYOUT = """
<root>/
  leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
"""
_NAME = "Cityscapes"

#: catId → category name (cityscapesScripts ordering).
CATEGORY_NAMES: tuple[str, ...] = (
    "void",
    "flat",
    "construction",
    "object",
    "nature",
    "sky",
    "human",
    "vehicle",
)
NUM_CATEGORIES = len(CATEGORY_NAMES)

#: label id → catId, the official cityscapesScripts table (ids 0..33 and -1 'license plate').
LABEL_TO_CATEGORY: dict[int, int] = {
    0: 0,  # unlabeled
    1: 0,  # ego vehicle
    2: 0,  # rectification border
    3: 0,  # out of roi
    4: 0,  # static
    5: 0,  # dynamic
    6: 0,  # ground
    7: 1,  # road
    8: 1,  # sidewalk
    9: 1,  # parking
    10: 1,  # rail track
    11: 2,  # building
    12: 2,  # wall
    13: 2,  # fence
    14: 2,  # guard rail
    15: 2,  # bridge
    16: 2,  # tunnel
    17: 3,  # pole
    18: 3,  # polegroup
    19: 3,  # traffic light
    20: 3,  # traffic sign
    21: 4,  # vegetation
    22: 4,  # terrain
    23: 5,  # sky
    24: 6,  # person
    25: 6,  # rider
    26: 7,  # car
    27: 7,  # truck
    28: 7,  # bus
    29: 7,  # caravan
    30: 7,  # trailer
    31: 7,  # train
    32: 7,  # motorcycle
    33: 7,  # bicycle
    -1: 7,  # license plate
}

_LUT = np.full(256, -1, dtype=np.int16)
for _label, _cat in LABEL_TO_CATEGORY.items():
    _LUT[_label % 256] = _cat  # -1 (license plate) lands on 255, its uint8 wrap-around
_STEM = re.compile(r"^(?P<stem>.+)_leftImg8bit\.png$")


def labels_to_categories(label_ids: np.ndarray, *, name: str = "<mask>") -> np.ndarray:
    """Map a labelIds array to category ids 0..7 (uint8).

    Raises:
        CorruptFileError: a value outside the official table (the message lists them).
    """
    ids = np.asarray(label_ids).astype(np.int64)
    bad = (ids < -1) | (ids > 255)
    cats = _LUT[np.where(bad, 0, ids % 256)]
    bad |= cats < 0
    if bad.any():
        values = sorted(set(np.asarray(label_ids)[bad].tolist()))[:10]
        raise CorruptFileError(name, f"label ids outside the Cityscapes table: {values}")
    return cats.astype(np.uint8)


class Cityscapes(SkipsCorruptFiles):
    """Cityscapes ``(image, 8-category mask)`` pairs.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/`` (see :data:`LAYOUT`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: ``(height, width)`` of the output image (bicubic); None keeps 1024×2048.
        mask_size: ``(height, width)`` of the category mask (nearest); None keeps full size.
        on_error: ``"skip"`` or ``"raise"`` on an unreadable image or mask.

    Items: ``{"key": "<city>/<stem>", "image": uint8 [H, W, 3], "mask": uint8 [h, w] in 0..7}``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: tuple[int, int] | None = (256, 512),
        mask_size: tuple[int, int] | None = (32, 64),
        on_error: OnError = "skip",
    ):
        self._init_skips(on_error)
        if split not in ("train", "val", "test"):
            raise ValueError(f"Cityscapes split must be train, val or test, got {split!r}")
        self.root = require_dir(_NAME, root, LAYOUT, "dataset root")
        self.split = split
        self.image_size = tuple(image_size) if image_size else None
        self.mask_size = tuple(mask_size) if mask_size else None
        img_dir = require_dir(_NAME, self.root / "leftImg8bit" / split, LAYOUT, "image folder")
        self.gt_dir = require_dir(_NAME, self.root / "gtFine" / split, LAYOUT, "gtFine folder")
        self.samples: list[tuple[str, Path, Path]] = []
        for city in sorted(p for p in img_dir.iterdir() if p.is_dir()):
            for f in sorted(city.iterdir()):
                m = _STEM.match(f.name)
                if m:
                    gt = self.gt_dir / city.name / f"{m['stem']}_gtFine_labelIds.png"
                    self.samples.append((f"{city.name}/{m['stem']}", f, gt))
        if not self.samples:
            raise DatasetLayoutError(_NAME, img_dir, "no *_leftImg8bit.png images", LAYOUT)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict[str, Any]:
        """Item ``index``; raises :class:`CorruptFileError` if its image or mask is unreadable."""
        key, img_path, gt_path = self.samples[index]
        if not gt_path.is_file():
            raise CorruptFileError(gt_path, f"missing the labelIds mask of {img_path.name}")
        img = load_rgb(img_path)
        ids = load_label_map(gt_path)
        if ids.shape != (img.size[1], img.size[0]):
            raise CorruptFileError(gt_path, f"mask {ids.shape} does not match image {img.size}")
        cats = labels_to_categories(ids, name=str(gt_path))
        image = resize_image(img, self.image_size) if self.image_size else np.array(img)
        mask = resize_mask(cats, self.mask_size) if self.mask_size else cats
        return {"key": key, "image": image, "mask": mask}

    __getitem__ = load

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._iter_skipping(range(len(self)), self.load)
