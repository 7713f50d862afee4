"""ImageNet ILSVRC-2012 in its distributed layouts, ADM center-cropped (256 or 512).

Train is one folder per synset. Val comes either flat with a label file (Kaggle's
``LOC_val_solution.csv``, or the devkit's ``ILSVRC2012_validation_ground_truth.txt`` whose
ILSVRC2012_IDs map to synsets through the devkit's ``meta.mat``) or reorganised into synset
folders like train. Class ids are the sorted WordNet ids (0..999), as torchvision's
``ImageFolder`` and guided-diffusion number them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from unmask.data.base import CroppedImageSplit
from unmask.data.errors import CorruptFileError, DatasetLayoutError

__all__ = ["ImageNet", "LAYOUT", "IMAGE_EXTENSIONS", "read_synset_mapping", "read_val_labels"]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
LAYOUT = """
<root>/
  train/<wnid>/<wnid>_<n>.JPEG          one folder per synset, e.g. train/n01440764/
  val/ILSVRC2012_val_00000001.JPEG      flat, labelled by ONE of:
      LOC_val_solution.csv                  (Kaggle: ImageId,PredictionString)
      ILSVRC2012_validation_ground_truth.txt + meta.mat   (devkit; ILSVRC2012_ID per line)
  val/<wnid>/*.JPEG                     or: val reorganised into synset folders
  LOC_synset_mapping.txt                optional: "<wnid> <names>" per line (class order)
(label files are looked up in <root>, <root>/ILSVRC2012_devkit_t12/data and up to 3 parent
 directories of <root>, which covers Kaggle's ILSVRC/Data/CLS-LOC nesting)
"""
_NAME = "ImageNet ILSVRC-2012"


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    """First existing file among ``names`` in root, its devkit folder, or 3 ancestors."""
    dirs = [root, root / "ILSVRC2012_devkit_t12" / "data", *list(root.parents)[:3]]
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def read_synset_mapping(path: str | Path) -> tuple[list[str], dict[str, str]]:
    """Parse ``LOC_synset_mapping.txt``: (wnids in file order, wnid → human-readable names)."""
    wnids: list[str] = []
    names: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError(path, f"not a UTF-8 text file ({e.reason})") from None
    for line in text.splitlines():
        if not line.strip():
            continue
        wnid, _, rest = line.strip().partition(" ")
        wnids.append(wnid)
        names[wnid] = rest
    return wnids, names


def _devkit_id_to_wnid(meta_mat: Path) -> dict[int, str]:
    """ILSVRC2012_ID → WNID for the 1000 leaf synsets of the devkit's ``meta.mat``."""
    from scipy.io import loadmat  # why: scipy only for this format

    synsets = loadmat(str(meta_mat), squeeze_me=True)["synsets"]
    out: dict[int, str] = {}
    for s in np.atleast_1d(synsets):
        if int(s["num_children"]) == 0:
            out[int(s["ILSVRC2012_ID"])] = str(s["WNID"])
    return out


def read_val_labels(label_file: str | Path, meta_mat: str | Path | None = None) -> dict[str, str]:
    """Val image stem (``ILSVRC2012_val_00000001``) → wnid, from either label format.

    Args:
        label_file: ``LOC_val_solution.csv`` or ``ILSVRC2012_validation_ground_truth.txt``.
        meta_mat: the devkit's ``meta.mat`` (needed for the ground-truth txt only).
    """
    label_file = Path(label_file)
    if label_file.suffix == ".csv":
        out: dict[str, str] = {}
        try:
            with open(label_file, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    out[row["ImageId"]] = row["PredictionString"].split()[0]
        except (KeyError, IndexError, AttributeError, UnicodeDecodeError, csv.Error) as e:
            raise CorruptFileError(
                label_file, f"expected 'ImageId,PredictionString' rows "
                f"({type(e).__name__}: {e})") from None
        return out
    if meta_mat is None:
        raise ValueError(
            f"{label_file}: the devkit ground truth needs meta.mat to map ids to wnids"
        )
    id_to_wnid = _devkit_id_to_wnid(Path(meta_mat))
    ids = [int(x) for x in label_file.read_text().split()]
    return {f"ILSVRC2012_val_{i + 1:08d}": id_to_wnid[k] for i, k in enumerate(ids)}


class ImageNet(CroppedImageSplit):
    """ILSVRC-2012 images with class labels, ADM center-cropped.

    Args:
        root: the folder holding ``train/`` and/or ``val/`` (see :data:`LAYOUT`).
        split: ``"train"`` or ``"val"``.
        image_size: crop size (256 or 512 in the papers); None keeps the decoded image.
        on_error: ``"skip"`` corrupt images while iterating (recorded in ``skipped``) or
            ``"raise"``.

    Items are dicts ``{"key": relative path, "image": uint8 [S, S, 3], "label": int}``.
    """

    split_label = "ImageNet"

    def _open(self) -> None:
        if not self.root.is_dir():
            raise DatasetLayoutError(_NAME, self.root, "missing dataset root", LAYOUT)
        split_dir = self.root / self.split
        if not split_dir.is_dir():
            raise DatasetLayoutError(_NAME, split_dir, f"missing {self.split}/ folder", LAYOUT)
        self.classes = self._class_list()
        self.class_to_idx = {w: i for i, w in enumerate(self.classes)}
        self.samples = self._index(split_dir)
        if not self.samples:
            raise DatasetLayoutError(_NAME, split_dir, "no images found", LAYOUT)

    # -- indexing -------------------------------------------------------------------------
    def _class_list(self) -> list[str]:
        mapping = _find(self.root, ("LOC_synset_mapping.txt",))
        if mapping is not None:
            return sorted(read_synset_mapping(mapping)[0])
        for sub in ("train", "val"):
            d = self.root / sub
            if d.is_dir():
                wnids = sorted(p.name for p in d.iterdir() if p.is_dir())
                if wnids:
                    return wnids
        meta = _find(self.root, ("meta.mat",))
        if meta is not None:
            return sorted(_devkit_id_to_wnid(meta).values())
        raise DatasetLayoutError(
            _NAME, self.root, "cannot determine the synsets (no class folders, no mapping)", LAYOUT
        )

    def _index(self, split_dir: Path) -> list[tuple[Path, int]]:
        class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
        if class_dirs:
            unknown = [p.name for p in class_dirs if p.name not in self.class_to_idx]
            if unknown:
                raise DatasetLayoutError(
                    _NAME, split_dir, f"folders that are not known synsets: {unknown[:5]}", LAYOUT
                )
            return [
                (f, self.class_to_idx[d.name])
                for d in class_dirs
                for f in sorted(d.iterdir())
                if _is_image(f)
            ]
        if self.split == "train":
            raise DatasetLayoutError(_NAME, split_dir, "no synset folders in train/", LAYOUT)
        return self._index_flat_val(split_dir)

    def _index_flat_val(self, val_dir: Path) -> list[tuple[Path, int]]:
        csv_file = _find(self.root, ("LOC_val_solution.csv",))
        if csv_file is not None:
            labels = read_val_labels(csv_file)
        else:
            gt = _find(self.root, ("ILSVRC2012_validation_ground_truth.txt",))
            meta = _find(self.root, ("meta.mat",))
            if gt is None or meta is None:
                raise DatasetLayoutError(
                    _NAME,
                    val_dir,
                    "flat val/ without LOC_val_solution.csv or devkit labels",
                    LAYOUT,
                )
            labels = read_val_labels(gt, meta)
        files = {f.stem: f for f in val_dir.iterdir() if _is_image(f)}
        samples = []
        for stem in sorted(labels):
            wnid = labels[stem]
            if wnid not in self.class_to_idx:
                raise DatasetLayoutError(
                    _NAME, val_dir, f"val label {wnid} of {stem} is not a known synset", LAYOUT
                )
            path = files.get(stem, val_dir / f"{stem}.JPEG")  # a missing one is reported on load
            samples.append((path, self.class_to_idx[wnid]))
        return samples

    # -- access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict[str, Any]:
        """Item ``index``; raises :class:`CorruptFileError` if its file cannot be decoded."""
        path, label = self.samples[index]
        arr = self._read_image(path, "listed in the labels but missing on disk")
        return {"key": str(path.relative_to(self.root)), "image": arr, "label": label}
