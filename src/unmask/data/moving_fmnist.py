"""Moving Fashion-MNIST: a synthetic video set generated deterministically from Fashion-MNIST.

The Moving-MNIST recipe (Srivastava et al., 2015) with garments instead of digits: each video
places ``num_items`` 28×28 items at random positions on a ``size``×``size`` black canvas and
moves each along a straight line with a random direction and speed, reflecting off the canvas
borders; overlapping items combine by pixel-wise maximum. Video ``i`` depends only on
``(seed, i)`` (its own ``numpy`` generator), so any video can be regenerated alone, in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unmask.data import fashion_mnist

__all__ = ["MovingFashionMNIST", "bounce_trajectory"]

ITEM = 28


def bounce_trajectory(
    start: np.ndarray, velocity: np.ndarray, num_frames: int, limit: float
) -> np.ndarray:
    """Positions [T, 2] of a point moving at constant ``velocity`` inside ``[0, limit]²``,
    reflected at the borders (exact reflection, so a step never leaves the box)."""
    pos = np.empty((num_frames, 2))
    p, v = start.astype(float).copy(), velocity.astype(float).copy()
    for t in range(num_frames):
        pos[t] = p
        p = p + v
        for d in range(2):
            if p[d] < 0:
                p[d], v[d] = -p[d], -v[d]
            elif p[d] > limit:
                p[d], v[d] = 2 * limit - p[d], -v[d]
    return pos


class MovingFashionMNIST:
    """Deterministic bouncing-garment videos.

    Args:
        images: uint8 [N, 28, 28] source items (e.g. a Fashion-MNIST split).
        labels: their class ids [N] (returned per video), optional.
        num_videos: dataset length.
        num_frames: T frames per video.
        size: canvas side (64 in Moving MNIST).
        num_items: items per video (2 in Moving MNIST).
        speed: (min, max) pixels per frame, drawn uniformly per item.
        seed: the dataset seed.

    Items: ``{"key": str(i), "video": uint8 [T, size, size], "items": int64 [num_items]
    (indices into images), "labels": int64 [num_items] (or -1 without labels),
    "positions": float [num_items, T, 2] (top-left corner, (row, col))}``.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        num_videos: int = 10_000,
        num_frames: int = 16,
        size: int = 64,
        num_items: int = 2,
        speed: tuple[float, float] = (2.0, 5.0),
        seed: int = 0,
    ):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (ITEM, ITEM):
            raise ValueError(f"images must be uint8 [N, 28, 28], got {images.dtype} {images.shape}")
        if size < ITEM:
            raise ValueError(f"canvas size must be >= {ITEM}, got {size}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        if not 0 <= speed[0] <= speed[1]:
            raise ValueError(f"speed must be (min, max) with 0 <= min <= max, got {speed}")
        self.images, self.labels = images, labels
        self.num_videos, self.num_frames = num_videos, num_frames
        self.size, self.num_items, self.speed, self.seed = size, num_items, speed, seed

    @classmethod
    def from_default(cls, split: str = "train", root: str | Path | None = None, **kwargs: Any):
        """Built on a Fashion-MNIST split of the Debian package (``unmask.data.fashion_mnist``)."""

        images, labels = fashion_mnist.load(split, root or fashion_mnist.DEFAULT_ROOT)
        seed = kwargs.pop("seed", 0 if split == "train" else 1)
        return cls(images, labels, seed=seed, **kwargs)

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_videos:
            raise IndexError(f"video {index} out of range 0..{self.num_videos - 1}")
        rng = np.random.default_rng([self.seed, index])
        limit = self.size - ITEM
        items = rng.integers(0, len(self.images), self.num_items)
        video = np.zeros((self.num_frames, self.size, self.size), dtype=np.uint8)
        positions = np.empty((self.num_items, self.num_frames, 2))
        for k, item in enumerate(items):
            start = rng.uniform(0, limit, 2)
            theta = rng.uniform(0, 2 * np.pi)
            speed = rng.uniform(*self.speed)
            velocity = speed * np.array([np.sin(theta), np.cos(theta)])
            positions[k] = bounce_trajectory(start, velocity, self.num_frames, limit)
            sprite = self.images[item]
            for t, (r, c) in enumerate(np.rint(positions[k]).astype(int)):
                window = video[t, r : r + ITEM, c : c + ITEM]
                np.maximum(window, sprite, out=window)
        labels = (
            self.labels[items].astype(np.int64)
            if self.labels is not None
            else np.full(self.num_items, -1, np.int64)
        )
        return {
            "key": str(index),
            "video": video,
            "items": items.astype(np.int64),
            "labels": labels,
            "positions": positions,
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))
