"""CIFAR-10 from the official ``cifar-10-batches-py`` pickles.

Each batch (``data_batch_1`` .. ``data_batch_5`` for train, ``test_batch``) is a pickled dict
with ``b"data"`` (uint8 [10000, 3072], row = 1024 red, 1024 green, 1024 blue values in row-major
order), ``b"labels"`` (list of ints 0..9) and ``b"filenames"``; ``batches.meta`` holds
``b"label_names"``. Pickles are read with :class:`_BatchUnpickler`, which allows only the
builtins and numpy types a CIFAR batch contains (no arbitrary code from a tampered file).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unmask.data.errors import (
    CorruptFileError,
    DatasetLayoutError,
    OnError,
    SkipsCorruptFiles,
    require_dir,
)

__all__ = ["CIFAR10", "LAYOUT", "read_batch", "TRAIN_BATCHES", "TEST_BATCHES"]

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
LAYOUT = """
<root>/                       (the folder unpacked from cifar-10-python.tar.gz)
  cifar-10-batches-py/        (or <root> may be this folder itself)
    data_batch_1 .. data_batch_5, test_batch   pickled {b"data": uint8 [10000, 3072],
                                                        b"labels": [int], b"filenames": [bytes]}
    batches.meta                               pickled {b"label_names": [bytes] * 10}
"""
_NAME = "CIFAR-10"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler restricted to what CIFAR batches reference (numpy arrays and dtypes)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"disallowed global {module}.{name}")


def read_batch(path: str | Path) -> dict[str, Any]:
    """Load one batch pickle as a dict with str keys (``data``, ``labels``, ...).

    Raises:
        CorruptFileError: unreadable pickle or wrong contents.
    """
    path = Path(path)
    try:
        raw = _BatchUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError, IndexError) as e:
        raise CorruptFileError(path, f"unreadable CIFAR pickle ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise CorruptFileError(path, f"expected a dict, got {type(raw).__name__}")
    out = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
    if "label_names" in out:
        return out
    data = np.asarray(out.get("data"))
    labels = out.get("labels")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels is None:
        raise CorruptFileError(path, "expected data uint8 [N, 3072] and labels")
    if len(labels) != len(data):
        raise CorruptFileError(path, f"{len(labels)} labels for {len(data)} images")
    out["data"], out["labels"] = data, np.asarray(labels, dtype=np.int64)
    return out


class CIFAR10(SkipsCorruptFiles):
    """CIFAR-10 images (uint8 [32, 32, 3]) and labels.

    Loads the split's batches eagerly (50 000 images are 150 MB): a corrupt batch is named,
    recorded in ``skipped`` and left out (or raised with ``on_error="raise"``).

    Args:
        root: folder containing ``cifar-10-batches-py/`` or that folder itself.
        split: ``"train"`` or ``"test"``.
        on_error: ``"skip"`` or ``"raise"``.

    Attributes:
        images: uint8 [N, 32, 32, 3]; labels: int64 [N]; classes: the 10 label names.
    """

    def __init__(self, root: str | Path, split: str = "train", on_error: OnError = "skip"):
        self._init_skips(on_error)
        if split not in ("train", "test"):
            raise ValueError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
        root = require_dir(_NAME, root, LAYOUT, "dataset root")
        self.dir = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
        names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
        missing = [n for n in names if not (self.dir / n).is_file()]
        if missing:
            raise DatasetLayoutError(_NAME, self.dir / missing[0], "missing batch file", LAYOUT)
        self.classes = self._label_names(self.dir / "batches.meta")
        images, labels, self.keys = [], [], []
        for name in names:
            try:
                batch = read_batch(self.dir / name)
            except CorruptFileError as err:
                self._skip(err)
                continue
            images.append(batch["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(batch["labels"])
            files = batch.get("filenames") or [b""] * len(batch["labels"])
            self.keys += [
                f"{name}/{i}:{f.decode() if isinstance(f, bytes) else f}"
                for i, f in enumerate(files)
            ]
        if not images:
            raise DatasetLayoutError(_NAME, self.dir, "no readable batch", LAYOUT)
        self.images = np.ascontiguousarray(np.concatenate(images))
        self.labels = np.concatenate(labels)

    def _label_names(self, meta: Path) -> list[str]:
        if meta.is_file():
            try:
                names = read_batch(meta)["label_names"]
                return [b.decode() if isinstance(b, bytes) else str(b) for b in names]
            except (CorruptFileError, KeyError) as e:
                err = (
                    e
                    if isinstance(e, CorruptFileError)
                    else CorruptFileError(meta, "no label_names")
                )
                self._skip(err)
        return [str(i) for i in range(10)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "key": self.keys[index],
            "image": self.images[index],
            "label": int(self.labels[index]),
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))
