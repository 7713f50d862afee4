"""uint8 image batches in any common layout → what torch-fidelity's Inception takes.

``[N, H, W]`` (grayscale), ``[N, H, W, C]`` or ``[N, C, H, W]`` with C ∈ {1, 3}, numpy or torch,
become ``uint8 [3, H, W]`` items (:class:`UInt8Images`, no copy of the batch) or one
``uint8 [N, 3, H, W]`` tensor (:func:`to_uint8_nchw`); grayscale is replicated to three channels.
Non-uint8 input is refused: quantising is the caller's decision (FID is defined on 8-bit images).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["Layout", "UInt8Images", "as_dataset", "image_resolution", "to_uint8_nchw"]

Layout = Literal["auto", "nhwc", "nchw"]


def _as_uint8_tensor(images: Any) -> torch.Tensor:
    if torch.is_tensor(images):
        x = images.detach().cpu()
    else:
        arr = np.asarray(images)
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (got {x.dtype}); quantise to [0, 255] first")
    return x


def _channel_layout(shape: tuple[int, ...], layout: Layout) -> Literal["nhw", "nhwc", "nchw"]:
    """Which layout a uint8 image batch of ``shape`` is in (``nhw`` = grayscale without C)."""
    if len(shape) == 3:
        return "nhw"
    if len(shape) != 4:
        raise ValueError(f"images must be [N,H,W], [N,H,W,C] or [N,C,H,W]; got {shape}")
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if layout == "auto":
        if first and last:
            raise ValueError(f"ambiguous layout for shape {shape}: pass layout='nhwc' or 'nchw'")
        if not (first or last):
            raise ValueError(f"no channel dim of size 1 or 3 in shape {shape}")
        return "nchw" if first else "nhwc"
    channels = shape[1] if layout == "nchw" else shape[3]
    if channels not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got shape {shape} ({layout})")
    return layout


def _to_chw3(x: torch.Tensor, kind: str) -> torch.Tensor:
    """One image in layout ``kind`` (without N) → contiguous ``uint8 [3, H, W]``."""
    if kind == "nhw":
        x = x.unsqueeze(0)
    elif kind == "nhwc":
        x = x.permute(2, 0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.contiguous()


def to_uint8_nchw(images: Any, layout: Layout = "auto") -> torch.Tensor:
    """uint8 images → contiguous ``uint8 [N, 3, H, W]`` CPU tensor.

    Accepts numpy arrays or tensors shaped ``[N, H, W]`` (grayscale), ``[N, H, W, C]`` or
    ``[N, C, H, W]`` with C ∈ {1, 3}; grayscale is replicated to 3 channels. ``layout`` resolves
    the ambiguous case where both dim 1 and dim 3 could be channels. Non-uint8 input is refused:
    quantising is the caller's decision (FID is defined on 8-bit images).
    """
    x = _as_uint8_tensor(images)
    kind = _channel_layout(tuple(x.shape), layout)
    if kind == "nhw":
        x = x.unsqueeze(1)
    elif kind == "nhwc":
        x = x.permute(0, 3, 1, 2)
    if x.shape[0] == 0:
        raise ValueError("no images")
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x.contiguous()


class UInt8Images(Dataset):
    """Dataset view of a uint8 image batch yielding ``uint8 [3, H, W]`` (torch-fidelity's input).

    The batch is kept as given (no copy of the whole set); each item is permuted / replicated to
    three channels on access.
    """

    def __init__(self, images: Any, layout: Layout = "auto") -> None:
        self.images = _as_uint8_tensor(images)
        self.kind = _channel_layout(tuple(self.images.shape), layout)
        if self.images.shape[0] == 0:
            raise ValueError("no images")
        c_h_w = _to_chw3(self.images[0], self.kind).shape
        self.height, self.width = int(c_h_w[1]), int(c_h_w[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return _to_chw3(self.images[i], self.kind)


def as_dataset(images: Any, layout: Layout) -> Dataset:
    """A torch Dataset yielding uint8 [3, H, W] is used as is; arrays are wrapped."""
    if isinstance(images, Dataset):
        first = images[0]
        if not (torch.is_tensor(first) and first.dtype == torch.uint8 and first.dim() == 3
                and first.shape[0] == 3):
            raise TypeError("a Dataset input must yield uint8 [3, H, W] tensors")
        return images
    return UInt8Images(images, layout)


def image_resolution(ds: Dataset) -> str:
    """``"<H>x<W>"`` of a dataset's images."""
    if isinstance(ds, UInt8Images):
        return f"{ds.height}x{ds.width}"
    first = ds[0]
    return f"{first.shape[1]}x{first.shape[2]}"

