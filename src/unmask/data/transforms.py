"""Image decoding and the resizing conventions of the papers.

* :func:`center_crop_arr` is ADM's (guided-diffusion) ImageNet preprocessing, used by DI, MAR and
  eMIGM: halve with a BOX filter while the short side is at least twice the target, resize with
  BICUBIC so the short side equals the target, then take the central square.
* :func:`resize_image` / :func:`resize_mask` resize an image (bicubic) and a label map (nearest,
  so no new label values appear), as DI does for Cityscapes.
* :func:`load_rgb` decodes a file or bytes to RGB, turning every decoder failure into a
  :class:`~unmask.data.errors.CorruptFileError` that names the file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unmask.data.errors import CorruptFileError

__all__ = [
    "center_crop_arr",
    "load_rgb",
    "load_label_map",
    "resize_image",
    "resize_mask",
    "hflip",
    "to_unit_range",
    "from_unit_range",
]

_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
)


def center_crop_arr(pil_image: Image.Image, image_size: int) -> np.ndarray:
    """ADM center crop: ``image_size``×``image_size`` uint8 array (H, W, C) from a PIL image.

    Repeated 2× BOX downsampling while ``min(W, H) >= 2 * image_size``, then a BICUBIC resize
    making the short side ``image_size`` (each side ``round(side * scale)``), then the central
    crop (offset ``(side - image_size) // 2``).
    """
    while min(*pil_image.size) >= 2 * image_size:
        half = tuple(s // 2 for s in pil_image.size)
        pil_image = pil_image.resize(half, resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    new_size = tuple(round(s * scale) for s in pil_image.size)
    pil_image = pil_image.resize(new_size, resample=Image.BICUBIC)
    arr = np.array(pil_image)
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return arr[top : top + image_size, left : left + image_size]


def _open(source: str | Path | bytes, name: str | None) -> tuple[Image.Image, str]:
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()  # force the full decode: truncated files fail here, not later
    except FileNotFoundError:
        raise CorruptFileError(label, "file disappeared while reading") from None
    except _DECODE_ERRORS as e:
        raise CorruptFileError(label, f"cannot decode image ({type(e).__name__}: {e})") from None
    return img, label


def load_rgb(source: str | Path | bytes, *, name: str | None = None) -> Image.Image:
    """Decode an image file (or its bytes) to an RGB PIL image.

    Args:
        source: a path or the encoded bytes.
        name: how to name the file in errors (defaults to the path).

    Raises:
        CorruptFileError: the file cannot be decoded (truncated, not an image, ...).
    """
    img, _ = _open(source, name)
    return img if img.mode == "RGB" else img.convert("RGB")


def load_label_map(source: str | Path | bytes, *, name: str | None = None) -> np.ndarray:
    """Decode a single-channel label PNG (mode L/P/I) to an integer array [H, W], unchanged ids."""
    img, label = _open(source, name)
    if img.mode not in ("L", "P", "I", "I;16"):
        raise CorruptFileError(label, f"expected a single-channel label map, got mode {img.mode}")
    return np.array(img)


def resize_image(img: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize to ``size = (height, width)``; returns uint8 (H, W, C)."""
    pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
    h, w = size
    if pil.size != (w, h):
        pil = pil.resize((w, h), resample=Image.BICUBIC)
    return np.array(pil)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer label map to ``size = (height, width)``.

    Works on the label values themselves (never interpolates), so the output holds only values
    present in the input. Uses PIL's NEAREST on a uint8/int32 image.
    """
    mask = np.asarray(mask)
    h, w = size
    if mask.shape[:2] == (h, w):
        return mask.copy()
    pil = Image.fromarray(mask if mask.dtype == np.uint8 else mask.astype(np.int32))  # L or I
    out = np.array(pil.resize((w, h), resample=Image.NEAREST))
    return out.astype(mask.dtype)


def hflip(arr: np.ndarray, *, channels_last: bool = True) -> np.ndarray:
    """Horizontal flip: reverses the width axis (-2 for ``(…, H, W, C)``, -1 for ``(…, H, W)``)."""
    return np.ascontiguousarray(np.flip(arr, axis=-2 if channels_last else -1))


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] → float32 [-1, 1] (``x / 127.5 - 1``, as ADM)."""
    return np.asarray(images, dtype=np.float32) / 127.5 - 1.0


def from_unit_range(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] → uint8 [0, 255], rounded and clipped."""
    return np.clip(np.round((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)
