"""Image / mask pairs derived from Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import pytest

from unmask.data.seg_fmnist import NUM_MASK_CLASSES, SegFashionMNIST, majority_pool


def test_mask_is_thresholded_foreground_times_class() -> None:
    img = np.zeros((2, 28, 28), np.uint8)
    img[0, 5:10, 5:10] = 200
    img[0, 0, 0] = 10  # faint: below the threshold
    img[1, 20:, :] = 17
    ds = SegFashionMNIST(img, np.array([3, 9]), threshold=16)
    a, b = ds[0], ds[1]
    assert a["mask"].dtype == np.uint8 and a["label"] == 3
    assert set(np.unique(a["mask"])) == {0, 4} and (a["mask"] == 4).sum() == 25
    assert a["mask"][0, 0] == 0
    assert (b["mask"][20:] == 10).all() and (b["mask"][:20] == 0).all()
    assert ds.num_classes == NUM_MASK_CLASSES == 11


def test_majority_pool_to_token_grid() -> None:
    m = np.zeros((1, 4, 4), np.uint8)
    m[0, :2, :2] = [[5, 5], [5, 0]]  # 3 of 4 → 5
    m[0, :2, 2:] = [[5, 5], [0, 0]]  # tie → the larger id (foreground)
    m[0, 2:, :2] = [[0, 5], [0, 0]]  # 1 of 4 → background
    np.testing.assert_array_equal(majority_pool(m, (2, 2))[0], [[5, 5], [0, 0]])
    with pytest.raises(ValueError, match="not divisible"):
        majority_pool(m, (3, 3))


def test_default_dataset_pairs() -> None:
    from unmask.data import fashion_mnist

    if not fashion_mnist.DEFAULT_ROOT.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    ds = SegFashionMNIST.from_default("test", mask_size=(7, 7))
    images, masks, labels = ds.arrays()
    assert images.shape == (10_000, 28, 28) and masks.shape == (10_000, 7, 7)
    fg = masks > 0
    assert (masks[fg] == np.broadcast_to(labels[:, None, None] + 1, masks.shape)[fg]).all()
    assert 0.3 < fg.mean() < 0.7
