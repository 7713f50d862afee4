"""Fashion-MNIST IDX reader: the Debian files load and validate; malformed files fail clearly."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from unmask.data import fashion_mnist as fm

needs_data = pytest.mark.skipif(
    not fm.DEFAULT_ROOT.is_dir(), reason="apt-get install dataset-fashion-mnist"
)


def _write_idx(path, arr: np.ndarray, *, magic: bytes | None = None, dims=None) -> None:
    dims = arr.shape if dims is None else dims
    header = (magic or bytes([0, 0, 0x08, arr.ndim])) + struct.pack(f">{len(dims)}I", *dims)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@needs_data
def test_test_split_loads():
    images, labels = fm.load("test")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and set(np.unique(labels)) == set(range(10))
    assert len(fm.CLASS_NAMES) == 10
    assert len(fm.source_hash("test")) == 64


def test_round_trip_of_written_idx(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    lbls = np.arange(5, dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", lbls)
    x, y = fm.load("test", root=tmp_path)
    np.testing.assert_array_equal(x, imgs)
    np.testing.assert_array_equal(y, lbls)


def test_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "bad.gz"
    _write_idx(path, np.zeros((2, 3), np.uint8), magic=b"\x08\x03\x00\x00")
    with pytest.raises(fm.IdxError, match=r"bad\.gz: not an IDX file"):
        fm.read_idx(path)


def test_truncated_data_names_the_file(tmp_path):
    path = tmp_path / "short.gz"
    _write_idx(path, np.zeros((2, 3, 3), np.uint8), dims=(4, 3, 3))  # header claims 4 images
    with pytest.raises(fm.IdxError, match=r"short\.gz: IDX header says shape \(4, 3, 3\)"):
        fm.read_idx(path, ndim=3)


def test_wrong_ndim(tmp_path):
    path = tmp_path / "labels.gz"
    _write_idx(path, np.zeros((2, 3), np.uint8))
    with pytest.raises(fm.IdxError, match="expected a 1-d IDX array"):
        fm.read_idx(path, ndim=1)


def test_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fm.load("train", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fm.load("train", root=tmp_path)
    with pytest.raises(ValueError, match="unknown Fashion-MNIST split"):
        fm.files("validation")
