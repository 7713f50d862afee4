"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files, gzip).

The package installs ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}
-ubyte.gz``: 60 000 training and 10 000 test images, 28×28 uint8, labels 0..9.

IDX format (big-endian): a 4-byte magic ``0x00 0x00 <dtype> <ndim>`` (dtype 0x08 = uint8),
then ``ndim`` uint32 dimension sizes, then the data in C order.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from unmask.errors import UserError

__all__ = [
    "DEFAULT_ROOT",
    "CLASS_NAMES",
    "SPLITS",
    "IdxError",
    "read_idx",
    "files",
    "load",
    "source_hash",
]

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SPLITS = {"train": ("train", 60_000), "test": ("t10k", 10_000)}
_INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist`"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxError(UserError, ValueError):
    """A malformed or unexpected IDX file (the message names the file)."""


def read_idx(path: str | Path, *, ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file (``.gz`` or raw) into a numpy array, validating its header.

    Args:
        path: the file.
        ndim: the expected number of dimensions (3 for images, 1 for labels), or None.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; Fashion-MNIST is missing, {_INSTALL_HINT}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise IdxError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    code, nd = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise IdxError(f"{path}: unknown IDX data type 0x{code:02x}")
    if ndim is not None and nd != ndim:
        raise IdxError(f"{path}: expected a {ndim}-d IDX array, the header says {nd}-d")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise IdxError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=nd, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - header} data bytes"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def files(split: str, root: str | Path = DEFAULT_ROOT) -> tuple[Path, Path]:
    """Paths of the (images, labels) IDX files of ``split`` ('train' or 'test')."""
    if split not in SPLITS:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; valid: {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: Fashion-MNIST directory not found; {_INSTALL_HINT}")
    stem = SPLITS[split][0]
    return root / f"{stem}-images-idx3-ubyte.gz", root / f"{stem}-labels-idx1-ubyte.gz"


def load(split: str, root: str | Path = DEFAULT_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """Load a split: ``(images uint8 [N, 28, 28], labels uint8 [N])``, validated."""
    img_path, lbl_path = files(split, root)
    images = read_idx(img_path, ndim=3)
    labels = read_idx(lbl_path, ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise IdxError(f"{img_path}: expected uint8 images and labels")
    if images.shape[1:] != (28, 28):
        raise IdxError(f"{img_path}: expected 28×28 images, got {images.shape[1:]}")
    if images.shape[0] != labels.shape[0]:
        raise IdxError(
            f"{lbl_path}: {labels.shape[0]} labels for {images.shape[0]} images in {img_path.name}"
        )
    if labels.size and int(labels.max()) >= len(CLASS_NAMES):
        raise IdxError(f"{lbl_path}: label {int(labels.max())} out of range 0..9")
    return images, labels


def source_hash(split: str, root: str | Path = DEFAULT_ROOT) -> str:
    """sha256 of the split's two compressed IDX files (identifies the source data)."""
    h = hashlib.sha256()
    for p in files(split, root):
        h.update(p.read_bytes())
    return h.hexdigest()
