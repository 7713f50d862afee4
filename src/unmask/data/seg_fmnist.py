"""Image / segmentation-mask pairs derived from Fashion-MNIST (the embedded joint-modelling set).

The mask of an image is its thresholded foreground painted with its class:
``mask = (image > threshold) · (label + 1)``, so background is 0 and the ten garment classes are
1..10 (K = 11 mask classes). A lower-resolution mask (e.g. the token grid of a tokenizer, as DI
models Cityscapes masks at 32×64) is taken by *majority* pooling over blocks, ties going to the
foreground class.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unmask.data import fashion_mnist

__all__ = ["SegFashionMNIST", "NUM_MASK_CLASSES", "foreground_masks", "majority_pool"]

NUM_MASK_CLASSES = 11


def foreground_masks(images: np.ndarray, labels: np.ndarray, threshold: int = 16) -> np.ndarray:
    """uint8 masks [N, H, W]: ``label + 1`` where ``image > threshold``, else 0."""
    images, labels = np.asarray(images), np.asarray(labels).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_MASK_CLASSES - 1):
        raise ValueError(f"labels must lie in 0..{NUM_MASK_CLASSES - 2}")
    fg = images > threshold
    return (fg * (labels[:, None, None] + 1)).astype(np.uint8)


def majority_pool(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downsample label masks [N, H, W] to ``size`` by the most frequent value in each block.

    H and W must be multiples of the target size. Ties go to the larger label id (here: the
    foreground over background 0).
    """
    n, h, w = masks.shape
    th, tw = size
    if h % th or w % tw:
        raise ValueError(f"mask {h}×{w} is not divisible into {th}×{tw} blocks")
    blocks = masks.reshape(n, th, h // th, tw, w // tw).transpose(0, 1, 3, 2, 4)
    blocks = blocks.reshape(n, th, tw, -1)
    k = int(masks.max(initial=0)) + 1
    counts = np.stack([(blocks == c).sum(axis=-1) for c in range(k)], axis=-1)
    best = k - 1 - np.argmax(counts[..., ::-1], axis=-1)  # argmax, ties → larger id
    return best.astype(masks.dtype)


class SegFashionMNIST:
    """Fashion-MNIST images with derived 11-class masks.

    Args:
        images: uint8 [N, 28, 28]; labels: int [N] in 0..9.
        threshold: foreground is ``image > threshold``.
        mask_size: ``(h, w)`` of the returned masks (majority pooling); None keeps 28×28.

    Items: ``{"key": str(i), "image": uint8 [28, 28], "mask": uint8 [h, w] in 0..10,
    "label": int}``; :meth:`arrays` gives the whole set at once.
    """

    num_classes = NUM_MASK_CLASSES

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        threshold: int = 16,
        mask_size: tuple[int, int] | None = None,
    ):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"images must be uint8 [N, H, W], got {images.dtype} {images.shape}")
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.images = images
        self.labels = np.asarray(labels).astype(np.int64)
        self.threshold = threshold
        self.mask_size = tuple(mask_size) if mask_size else None
        masks = foreground_masks(images, self.labels, threshold)
        self.masks = majority_pool(masks, self.mask_size) if self.mask_size else masks

    @classmethod
    def from_default(cls, split: str = "train", root: str | Path | None = None, **kwargs: Any):
        """Built on a Fashion-MNIST split of the Debian package (``unmask.data.fashion_mnist``)."""

        images, labels = fashion_mnist.load(split, root or fashion_mnist.DEFAULT_ROOT)
        return cls(images, labels, **kwargs)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(images [N, 28, 28], masks [N, h, w], labels [N])``."""
        return self.images, self.masks, self.labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "key": str(index),
            "image": self.images[index],
            "mask": self.masks[index],
            "label": int(self.labels[index]),
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))
