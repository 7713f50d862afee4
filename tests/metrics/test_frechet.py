"""Fréchet distance against independent computations (scipy sqrtm, closed forms, torch-fidelity)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

from unmask.metrics.frechet import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
)


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The TTUR / pytorch-fid recipe: complex sqrtm of the product, real part of the trace."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(np.real(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))


@pytest.mark.parametrize("n,d", [(400, 16), (300, 64)])
def test_matches_scipy_sqrtm_on_full_rank_covariances(n: int, d: int) -> None:
    rng = np.random.default_rng(d)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 0.3
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-8)
    assert ours == pytest.approx(frechet_distance_from_features(a, b), rel=1e-12)
    # the nuclear-norm path on the same features (forced by using the first 10 samples of each)
    small = frechet_distance_from_features(a[:10], b[:10])
    assert small == pytest.approx(frechet_distance(*gaussian_statistics(a[:10]),
                                                   *gaussian_statistics(b[:10])), rel=1e-9)


@pytest.mark.parametrize("n1,n2", [(20, 25), (40, 12)])
def test_rank_deficient_features_match_scipy_and_the_statistics_path(n1: int, n2: int) -> None:
    # N < D (as with few samples of 2048-d features): the features path uses the small nuclear-norm
    # form; it must equal the D x D statistics path and the scipy sqrtm recipe.
    rng = np.random.default_rng(n1)
    f1 = rng.normal(size=(n1, 50)) @ rng.normal(size=(50, 50))
    f2 = rng.normal(size=(n2, 50)) * 1.5 + 0.2
    (mu1, s1), (mu2, s2) = gaussian_statistics(f1), gaussian_statistics(f2)
    ours = frechet_distance_from_features(f1, f2)
    assert ours == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-9)
    assert ours == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)


def test_closed_forms() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(100, 8))
    mu, s = gaussian_statistics(a)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    shift = rng.normal(size=8)
    assert frechet_distance(mu, s, mu + shift, s) == pytest.approx(shift @ shift, rel=1e-9)
    # 1-D Gaussians: (m1 - m2)^2 + (sd1 - sd2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # commuting (diagonal) covariances: sum of (sqrt(a_i) - sqrt(b_i))^2
    da, db = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    assert frechet_distance(np.zeros(3), np.diag(da), np.zeros(3), np.diag(db)) == pytest.approx(
        ((np.sqrt(da) - np.sqrt(db)) ** 2).sum()
    )


def test_agrees_with_torch_fidelity_statistics_to_metric() -> None:
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 32)), rng.normal(size=(150, 32)) * 0.7 + 0.1
    (mu1, s1), (mu2, s2) = gaussian_statistics(a), gaussian_statistics(b)
    theirs = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        theirs["frechet_inception_distance"], rel=1e-8
    )


def test_shape_errors() -> None:
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError):
        gaussian_statistics(np.zeros((1, 3)))
