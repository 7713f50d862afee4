"""CIFAR-10 loader on tiny batches in the cifar-10-batches-py pickle format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from unmask.data.cifar10 import CIFAR10
from unmask.data.errors import CorruptFileError, DatasetLayoutError

NAMES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def _batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(x) for x in rng.integers(0, 10, n)]
    d = {
        b"batch_label": b"training batch",
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }
    path.write_bytes(pickle.dumps(d, protocol=2))
    return data, labels


def _write(root: Path) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        _batch(d / f"data_batch_{i}", 3, i)
    _batch(d / "test_batch", 4, 0)
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": NAMES, b"num_vis": 3072}, 2))
    return d


def test_train_and_test_batches_decode_channel_planes(tmp_path: Path) -> None:
    d = _write(tmp_path)
    train = CIFAR10(tmp_path, "train")
    assert len(train) == 15 and train.classes[9] == "truck"
    data, labels = _batch(d / "data_batch_2", 3, 2)  # rewrite the same content, to compare
    item = train[4]
    assert item["key"] == "data_batch_2/1:img_2_1.png" and item["label"] == labels[1]
    img = item["image"]
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    # pixel (row 0, col 1): red at 1, green at 1024 + 1, blue at 2048 + 1
    assert tuple(img[0, 1]) == (data[1, 1], data[1, 1025], data[1, 2049])
    assert tuple(img[1, 0]) == (data[1, 32], data[1, 1056], data[1, 2080])
    test = CIFAR10(d, "test")  # the batches folder itself works too
    assert len(test) == 4 and [it["label"] for it in test] == list(test.labels)


def test_corrupt_or_malicious_batch_is_named_and_skipped(tmp_path: Path) -> None:
    d = _write(tmp_path)
    (d / "data_batch_3").write_bytes(b"\x80\x02}q\x00(U")  # truncated pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (d / "data_batch_4").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    ds = CIFAR10(tmp_path, "train")
    assert len(ds) == 9
    assert [Path(s.path).name for s in ds.skipped] == ["data_batch_3", "data_batch_4"]
    assert "disallowed global" in ds.skipped[1].reason
    with pytest.raises(CorruptFileError, match="data_batch_3"):
        CIFAR10(tmp_path, "train", on_error="raise")


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="missing batch file") as e:
        CIFAR10(tmp_path)
    assert "data_batch_1" in str(e.value) and "cifar-10-batches-py" in str(e.value)
