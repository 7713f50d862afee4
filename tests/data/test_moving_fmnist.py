"""Moving Fashion-MNIST: deterministic, bouncing, composed from the source items."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from unmask.data.moving_fmnist import MovingFashionMNIST, bounce_trajectory


def _sprites(n: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    s = rng.integers(1, 256, (n, 28, 28), dtype=np.uint8)  # no zero pixel: exact to locate
    return s


def test_bounce_reflects_at_borders() -> None:
    pos = bounce_trajectory(np.array([1.0, 9.0]), np.array([-3.0, 2.0]), 4, limit=10.0)
    np.testing.assert_allclose(pos, [[1, 9], [2, 9], [5, 7], [8, 5]])


def test_deterministic_per_index_and_seed() -> None:
    ds = MovingFashionMNIST(_sprites(), np.arange(5), num_videos=4, num_frames=6, seed=3)
    a, b = (
        ds[2],
        MovingFashionMNIST(_sprites(), np.arange(5), num_videos=4, num_frames=6, seed=3)[2],
    )
    np.testing.assert_array_equal(a["video"], b["video"])
    assert not np.array_equal(ds[1]["video"], a["video"])
    other = MovingFashionMNIST(_sprites(), num_videos=4, num_frames=6, seed=4)[2]
    assert not np.array_equal(other["video"], a["video"])
    assert a["video"].shape == (6, 64, 64) and a["video"].dtype == np.uint8
    assert (a["labels"] == a["items"]).all() and (other["labels"] == -1).all()
    with pytest.raises(IndexError):
        ds[4]


def test_single_item_is_the_sprite_moving_inside_the_canvas() -> None:
    sprites = _sprites()
    ds = MovingFashionMNIST(
        sprites, num_videos=3, num_frames=20, size=48, num_items=1, speed=(3.0, 3.0)
    )
    for i in range(3):
        item = ds[i]
        sprite = sprites[item["items"][0]]
        found = []
        for t, frame in enumerate(item["video"]):
            win = sliding_window_view(frame, (28, 28))
            hits = np.argwhere((win == sprite).all(axis=(-1, -2)))
            assert len(hits) == 1, f"video {i} frame {t}"
            found.append(hits[0])
            assert (frame > 0).sum() == 28 * 28  # nothing else drawn
        found = np.array(found)
        np.testing.assert_array_equal(found, np.rint(item["positions"][0]).astype(int))
        step = np.abs(np.diff(item["positions"][0], axis=0)).sum(axis=1)
        assert (step <= 3.0 * np.sqrt(2) + 1e-9).all()  # |dr| + |dc| <= speed·√2
    # over 20 frames at speed 3 in a 20-pixel box an item must have bounced at least once
    v = np.diff(ds[0]["positions"][0], axis=0)
    assert (np.sign(v[1:]) != np.sign(v[:-1])).any()


def test_two_items_combine_by_maximum() -> None:
    sprites = _sprites()
    item = MovingFashionMNIST(sprites, num_videos=1, num_frames=3, num_items=2)[0]
    frame = np.zeros((64, 64), np.uint8)
    for k in range(2):
        r, c = np.rint(item["positions"][k, 0]).astype(int)
        np.maximum(
            frame[r : r + 28, c : c + 28],
            sprites[item["items"][k]],
            out=frame[r : r + 28, c : c + 28],
        )
    np.testing.assert_array_equal(item["video"][0], frame)


def test_from_the_debian_fashion_mnist() -> None:
    from unmask.data import fashion_mnist

    if not fashion_mnist.DEFAULT_ROOT.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    ds = MovingFashionMNIST.from_default("test", num_videos=2, num_frames=4)
    v = ds[1]
    assert v["video"].shape == (4, 64, 64) and v["labels"].min() >= 0 and v["video"].max() > 0
