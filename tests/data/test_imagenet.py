"""ImageNet loader on tiny fixtures in each real ILSVRC-2012 layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from unmask.data.errors import CorruptFileError, DatasetLayoutError
from unmask.data.imagenet import ImageNet

WNIDS = ["n01440764", "n01443537", "n02119789"]  # sorted → class ids 0, 1, 2
DEVKIT_IDS = {"n02119789": 1, "n01440764": 449, "n01443537": 450}  # real ILSVRC2012_IDs


def _jpeg(path: Path, seed: int, size=(40, 60)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=95)


def _train(root: Path) -> None:
    for c, w in enumerate(WNIDS):
        for j in range(2):
            _jpeg(root / "train" / w / f"{w}_{j + 1}.JPEG", seed=10 * c + j)


VAL = {1: "n02119789", 2: "n01440764", 3: "n01443537", 4: "n01440764"}


def _val_flat(root: Path) -> None:
    for i in VAL:
        _jpeg(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", seed=100 + i)


def test_train_folders_labels_and_adm_crop(tmp_path: Path) -> None:
    _train(tmp_path)
    ds = ImageNet(tmp_path, "train", image_size=32)
    assert ds.classes == WNIDS and len(ds) == 6
    items = list(ds)
    assert [it["label"] for it in items] == [0, 0, 1, 1, 2, 2]
    assert items[2]["key"] == "train/n01443537/n01443537_1.JPEG"
    assert all(it["image"].shape == (32, 32, 3) and it["image"].dtype == np.uint8 for it in items)
    assert ds.num_skipped == 0
    assert ImageNet(tmp_path, "train", image_size=None)[0]["image"].shape == (40, 60, 3)


def test_val_flat_with_kaggle_csv(tmp_path: Path) -> None:
    _train(tmp_path)
    _val_flat(tmp_path)
    rows = ["ImageId,PredictionString"] + [
        f"ILSVRC2012_val_{i:08d},{w} 1 2 30 40 {w} 5 6 20 30" for i, w in VAL.items()
    ]
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    ds = ImageNet(tmp_path, "val", image_size=16)
    assert [it["label"] for it in ds] == [2, 0, 1, 0]


def test_val_flat_with_devkit_ground_truth_and_meta_mat(tmp_path: Path) -> None:
    _val_flat(tmp_path)  # no train/: the synsets come from meta.mat
    devkit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    dt = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    syn = np.array(
        [(DEVKIT_IDS[w], w, w, 0) for w in WNIDS] + [(1001, "n00001740", "entity", 3)], dtype=dt
    )
    savemat(devkit / "meta.mat", {"synsets": syn})
    gt = "\n".join(str(DEVKIT_IDS[VAL[i]]) for i in sorted(VAL)) + "\n"
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text(gt)
    ds = ImageNet(tmp_path, "val", image_size=16)
    assert ds.classes == WNIDS  # the non-leaf "entity" synset is not a class
    assert [it["label"] for it in ds] == [2, 0, 1, 0]


def test_val_reorganised_into_synset_folders(tmp_path: Path) -> None:
    _train(tmp_path)
    for i, w in VAL.items():
        _jpeg(tmp_path / "val" / w / f"ILSVRC2012_val_{i:08d}.JPEG", seed=i)
    assert sorted(it["label"] for it in ImageNet(tmp_path, "val", 16)) == [0, 0, 1, 2]


def test_corrupt_image_is_named_skipped_and_counted(tmp_path: Path) -> None:
    _train(tmp_path)
    bad = tmp_path / "train" / WNIDS[1] / f"{WNIDS[1]}_2.JPEG"
    bad.write_bytes(bad.read_bytes()[:100])
    ds = ImageNet(tmp_path, "train", image_size=16)
    assert len(list(ds)) == 5
    assert ds.num_skipped == 1 and ds.skipped[0].path == str(bad)
    strict = ImageNet(tmp_path, "train", image_size=16, on_error="raise")
    with pytest.raises(CorruptFileError, match=bad.name):
        list(strict)


def test_missing_or_malformed_dataset_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="missing dataset root") as e:
        ImageNet(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value) and "train/<wnid>/" in str(e.value)
    _train(tmp_path)
    with pytest.raises(DatasetLayoutError, match="missing val/"):
        ImageNet(tmp_path, "val")
    _val_flat(tmp_path)
    with pytest.raises(DatasetLayoutError, match="without LOC_val_solution.csv"):
        ImageNet(tmp_path, "val")
