"""FID/KID/precision-recall through torch-fidelity on real images, and the reference cache.

One reference set of 32 Fashion-MNIST images goes through Inception once; the noisy sets are then
scored against its cached statistics (counted: the extractor sees only the samples)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unmask.metrics import as_mlflow_metrics, as_mlflow_params
from unmask.metrics.fidelity import cached_features, compute_fidelity, reference_key
from unmask.metrics.images import to_uint8_nchw

N = 32
NOISE_STDS = (8.0, 24.0, 64.0)  # Gaussian noise std in uint8 units


@pytest.fixture(scope="module")
def counted() -> Iterator[list[int]]:
    """Counts images passed through torch-fidelity's Inception extractor."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    seen: list[int] = []
    original = FeatureExtractorInceptionV3.forward

    def forward(self: Any, x: torch.Tensor) -> Any:
        seen.append(int(x.shape[0]))
        return original(self, x)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FeatureExtractorInceptionV3, "forward", forward)
        yield seen


@pytest.fixture(scope="module")
def runs(counted: list[int], metrics_cache: Path, converted_weights: Path,
         fmnist: np.ndarray) -> dict[str, Any]:
    ref = fmnist[:N]
    key = reference_key("0123456789abcdef", split="test", resolution=28, dataset="fmnist")
    out: dict[str, Any] = {"key": key, "counts": []}
    kw = dict(cache_root=metrics_cache, verbose=False, batch_size=N)

    counted.clear()
    # the set against itself; the reference goes through Inception and is cached under `key`
    out["self"] = compute_fidelity(ref, ref, metrics=("fid", "kid", "pr"), reference_key=key, **kw)
    out["counts"].append(sum(counted))
    rng = np.random.default_rng(0)
    out["noisy"] = []
    for i, std in enumerate(NOISE_STDS):
        noisy = np.clip(ref + rng.normal(0.0, std, ref.shape), 0, 255).round().astype(np.uint8)
        last = i == len(NOISE_STDS) - 1
        counted.clear()
        res = compute_fidelity(
            noisy, key,  # the reference by its cache key only
            metrics=("fid", "kid", "pr") if last else ("fid",),
            samples_key="noisy-samples" if last else None,
            **kw,
        )
        out["counts"].append(sum(counted))
        out["noisy"].append(res)
    return out


def test_fid_of_a_set_against_itself_is_zero(runs: dict[str, Any]) -> None:
    r = runs["self"]
    assert abs(r["fid"].value) < 1e-2
    assert r["precision"].value == 1.0 and r["recall"].value == 1.0
    assert r["kid"].params["kid_subset_size"] == N  # min(1000, N, N_ref)


def test_fid_grows_monotonically_with_noise(runs: dict[str, Any]) -> None:
    fids = [runs["self"]["fid"].value] + [r["fid"].value for r in runs["noisy"]]
    assert all(a < b for a, b in zip(fids, fids[1:], strict=False)), fids
    assert fids[1] > 1.0  # even std 8/255 is visible to Inception
    last = runs["noisy"][-1]
    assert last["kid"].value > runs["self"]["kid"].value
    assert last["precision"].value < 1.0 and last["recall"].value < 1.0


def test_reference_statistics_are_cached_and_reused(runs: dict[str, Any],
                                                    metrics_cache: Path) -> None:
    # first call: samples + reference; later calls: only the samples reach the extractor
    assert runs["counts"] == [2 * N, N, N, N]
    ref = cached_features(runs["key"], metrics_cache)
    assert ref["meta"]["num_samples"] == N and ref["meta"]["resolution"] == "28x28"
    assert tuple(ref["features"].shape) == (N, 2048)
    assert runs["noisy"][0]["fid"].params["reference"] == runs["key"]
    assert runs["noisy"][0]["fid"].params["num_reference"] == N


def test_fid_equals_an_independent_scipy_computation_on_the_features(
    runs: dict[str, Any], metrics_cache: Path
) -> None:
    """FID vs the TTUR/pytorch-fid recipe (scipy sqrtm of S1 S2, real part of the trace) on the
    same cached features. Both covariances live in the span of the centred features, so sqrtm is
    taken on them restricted to an orthonormal basis Q of that span (exact: S = Q (QᵀSQ) Qᵀ)."""
    import scipy.linalg

    f_ref = cached_features(runs["key"], metrics_cache)["features"].double().numpy()
    f_gen = cached_features("noisy-samples", metrics_cache)["features"].double().numpy()
    mu1, mu2 = f_gen.mean(0), f_ref.mean(0)
    s1, s2 = np.cov(f_gen, rowvar=False), np.cov(f_ref, rowvar=False)
    q, _ = np.linalg.qr(np.concatenate([f_gen - mu1, f_ref - mu2]).T)  # [2048, 2N]
    p1, p2 = q.T @ s1 @ q, q.T @ s2 @ q
    covmean = scipy.linalg.sqrtm(p1 @ p2)
    d = mu1 - mu2
    fid = float(np.real(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))
    assert runs["noisy"][-1]["fid"].value == pytest.approx(fid, rel=1e-5)


def test_mlflow_params_carry_settings(runs: dict[str, Any]) -> None:
    res = runs["noisy"][-1]
    metrics = as_mlflow_metrics(res)
    assert set(metrics) == {"fid", "kid", "kid_std", "precision", "recall"}
    params = as_mlflow_params(res)
    assert params["fid.num_samples"] == str(N)
    assert params["fid.reference"] == runs["key"]
    assert params["fid.features"] == "inception-v3-2015-12-05-pool3-2048"
    assert params["kid.kid_subset_size"] == str(N)


def test_uncached_or_changed_reference_is_an_error(runs: dict[str, Any], metrics_cache: Path,
                                                   fmnist: np.ndarray) -> None:
    with pytest.raises(FileNotFoundError, match="not cached"):
        compute_fidelity(fmnist[:4], "no-such-key", metrics=("fid",), cache_root=metrics_cache)
    with pytest.raises(ValueError, match="key must change"):
        compute_fidelity(fmnist[:4], fmnist[:5], metrics=("fid",), reference_key=runs["key"],
                         cache_root=metrics_cache)


def test_reference_key_is_file_safe() -> None:
    k = reference_key("ab/cd ef", split="val", resolution=(32, 64), dataset="city scapes")
    assert k == "city_scapes-val-32x64-ab_cd_ef"


def test_image_layouts() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (2, 5, 7), dtype=np.uint8)
    x = to_uint8_nchw(gray)
    assert x.shape == (2, 3, 5, 7) and torch.equal(x[:, 0], x[:, 2])
    assert torch.equal(x[:, 1], torch.from_numpy(gray))
    nhwc = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    assert torch.equal(to_uint8_nchw(nhwc), torch.from_numpy(nhwc).permute(0, 3, 1, 2))
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous()
    assert torch.equal(to_uint8_nchw(nchw), nchw)
    assert to_uint8_nchw(rng.integers(0, 256, (2, 1, 5, 7), dtype=np.uint8)).shape == (2, 3, 5, 7)
    with pytest.raises(TypeError):
        to_uint8_nchw(np.zeros((2, 5, 7), np.float32))
    with pytest.raises(ValueError, match="ambiguous"):
        to_uint8_nchw(np.zeros((2, 3, 5, 3), np.uint8))
    assert to_uint8_nchw(np.zeros((2, 3, 5, 3), np.uint8), layout="nhwc").shape == (2, 3, 3, 5)


def test_extractor_is_built_once_per_process_and_layers_are_restored(
        metrics_cache: Path, converted_weights: Path, fmnist: np.ndarray) -> None:
    """Ablation trials share a worker process: the Inception extractor is loaded once, and a
    caller narrowing its layer list (the reference pass) does not leak into the next call."""
    from unmask.metrics import inception
    from unmask.metrics.inception import resolve_inception_weights

    weights = resolve_inception_weights(None, metrics_cache)
    layers = [inception.FEATURE_LAYER, "768"]  # the converted FID weights have no classifier
    dev = torch.device("cpu")
    fe = inception.extractor(weights, layers, dev)
    fe.features_list = [inception.FEATURE_LAYER]  # what the reference pass does
    again = inception.extractor(weights, layers, dev)
    assert again is fe and again.features_list == layers
    x = torch.from_numpy(np.repeat(fmnist[:4, None], 3, axis=1))
    fresh = inception.build_extractor(weights, layers, dev)
    with torch.no_grad():
        for a, b in zip(again(x), fresh(x), strict=True):
            torch.testing.assert_close(a, b)
    other = inception.extractor(weights, [inception.FEATURE_LAYER], dev)
    assert other is not fe and len(inception._EXTRACTORS) == 1
