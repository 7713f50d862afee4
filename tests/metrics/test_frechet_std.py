"""The FID's uncertainty (``fid_std``) and KID's subsets, against independent computations:
scipy sqrtm FIDs of each resample, and the spread of FIDs / KIDs over independent draws of
Gaussian features (reference fixed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

from unmask.metrics.frechet import (
    frechet_distance_from_features,
    frechet_std,
    half_sample_indices,
    resampled_frechet,
)
from unmask.metrics.heldout import kid_subset_size


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """TTUR / pytorch-fid: np.cov statistics and the complex sqrtm of Σ₁Σ₂."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
    d = mu1 - mu2
    return float(np.real(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))


@pytest.mark.parametrize(
    ("n", "m", "d"),
    [
        (60, 80, 12),  # resample size > rank of the reference factor: the r×r form
        (30, 60, 80),  # resample size <= rank (D > N as with Inception): the Gram-block form
    ],
)
def test_each_resample_equals_scipy_fid(n: int, m: int, d: int) -> None:
    rng = np.random.default_rng(n + d)
    gen = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 0.3
    ref = rng.normal(size=(m, d)) * 1.3
    halves = half_sample_indices(n, 4, seed=1)
    repeats = rng.integers(0, n, size=(3, n))  # with replacement (multiplicities > 1)
    for idx in (halves, repeats):
        ours = resampled_frechet(gen, ref, idx)
        for k, rows in enumerate(idx):
            assert ours[k] == pytest.approx(scipy_fid(gen[rows], ref), rel=1e-6)
    # the identity resample is the FID itself
    full = resampled_frechet(gen, ref, np.arange(n)[None])[0]
    assert full == pytest.approx(frechet_distance_from_features(gen, ref), rel=1e-9)


def test_half_samples_are_seeded_halves_without_replacement() -> None:
    a, b = half_sample_indices(11, 6, seed=3), half_sample_indices(11, 6, seed=3)
    assert a.shape == (6, 5) and np.array_equal(a, b)
    assert all(len(set(r)) == 5 and r.min() >= 0 and r.max() < 11 for r in a)
    assert not np.array_equal(a, half_sample_indices(11, 6, seed=4))
    with pytest.raises(ValueError, match="num_subsets"):
        half_sample_indices(11, 1, seed=0)


def _gaussian_draws(d: int, n: int, m: int, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d) * 1.2
    ref = rng.normal(size=(m, d))

    def draw() -> np.ndarray:
        return rng.normal(size=(n, d)) @ a.T + 0.2

    return ref, draw


@pytest.mark.parametrize(
    ("d", "n", "m"),
    [
        (6, 300, 1000),  # low-dimensional
        (256, 200, 300),  # D > N: the regime of 2048-d Inception features of ~1000 samples
    ],
)
def test_fid_std_matches_the_spread_of_independent_draws(d: int, n: int, m: int) -> None:
    ref, draw = _gaussian_draws(d, n, m, seed=d)
    spread = np.std([frechet_distance_from_features(draw(), ref) for _ in range(150)], ddof=1)
    est = np.mean([frechet_std(draw(), ref, num_subsets=60, seed=s) for s in range(5)])
    assert 0.75 < est / spread < 1.35, (est, spread)


def test_bootstrap_with_replacement_would_overstate_it_in_high_dimension() -> None:
    """Why fid_std is not the plain bootstrap: with D > N its duplicates inflate the spread."""
    ref, draw = _gaussian_draws(256, 200, 300, seed=256)
    spread = np.std([frechet_distance_from_features(draw(), ref) for _ in range(150)], ddof=1)
    rng = np.random.default_rng(0)
    boot = np.mean([
        np.std(resampled_frechet(g, ref, rng.integers(0, 200, size=(60, 200))), ddof=1)
        for g in (draw() for _ in range(3))
    ])
    assert boot / spread > 1.5


def test_fid_std_is_deterministic_given_the_seed() -> None:
    ref, draw = _gaussian_draws(8, 50, 80, seed=0)
    g = draw()
    assert frechet_std(g, ref, num_subsets=20, seed=7) == frechet_std(g, ref, num_subsets=20,
                                                                      seed=7)
    assert frechet_std(g, ref, num_subsets=20, seed=7) != frechet_std(g, ref, num_subsets=20,
                                                                      seed=8)


def test_kid_subset_rule_and_its_spread() -> None:
    """Subsets of half the set: kid_std then approximates the spread of the full-set KID over
    independent draws; subsets as large as the set make kid_std vanish (the old default)."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    assert kid_subset_size(500, 1000, 1000) == 500
    assert kid_subset_size(500, 200, 1000) == 100
    assert kid_subset_size(500, 1000, 300) == 150
    with pytest.raises(ValueError, match="KID needs"):
        kid_subset_size(500, 3, 1000)

    rng = np.random.default_rng(0)
    d, n = 64, 200
    a = rng.normal(size=(d, d)) / np.sqrt(d) * 1.2
    ref = torch.from_numpy(np.abs(rng.normal(size=(n, d))))

    def draw() -> torch.Tensor:
        return torch.from_numpy(np.abs(rng.normal(size=(n, d)) @ a.T + 0.2))

    def kid(g: torch.Tensor, size: int, subsets: int, seed: int = 0) -> tuple[float, float]:
        with threadpool_limits(1, user_api="blas"):  # small products: threads only contend
            o = kid_features_to_metric(g, ref, kid_subsets=subsets, kid_subset_size=size,
                                       rng_seed=seed, verbose=False)
        return o["kernel_inception_distance_mean"], o["kernel_inception_distance_std"]

    # the full-set KID (one subset = the whole set) over independent draws
    spread = np.std([kid(draw(), n, 1)[0] for _ in range(60)], ddof=1)
    m = kid_subset_size(500, n, n)
    est = np.mean([kid(draw(), m, 50, seed=s)[1] for s in range(3)])
    assert 0.7 < est / spread < 1.4, (est, spread)
    whole = kid(draw(), n, 10)[1]
    assert whole < 1e-3 * spread
