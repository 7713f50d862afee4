"""Fréchet distance between two Gaussians (the distance behind FID and FVD).

For N(μ₁, Σ₁) and N(μ₂, Σ₂) the squared 2-Wasserstein (Fréchet) distance is

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2 Tr((Σ₁ Σ₂)^{1/2}).

``Tr((Σ₁Σ₂)^{1/2})`` is computed in the symmetric form: with A = Σ₁^{1/2} (from ``eigh``),
Σ₁Σ₂ = A (A Σ₂ A) A⁻¹ is similar to the symmetric PSD matrix M = A Σ₂ A, so
``Tr((Σ₁Σ₂)^{1/2}) = Σᵢ √λᵢ(M)``. This needs only symmetric eigen-decompositions (no complex
``sqrtm``, no ε-regularisation), and it is exact when Σ₁ is singular — the usual case when the
number of samples is below the feature dimension. Eigenvalues below D·eps·λ_max are rounding
noise of a zero eigenvalue and are set to 0 (their square roots would otherwise add ~√eps each).

FID uses the 2048-d Inception pool3 features; FVD the 400-d I3D logits features. Statistics use
the unbiased covariance (``np.cov(features, rowvar=False)``), as TTUR/pytorch-fid/torch-fidelity do.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["frechet_distance", "frechet_distance_from_features", "gaussian_statistics"]


def gaussian_statistics(features: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean μ = (1/N) Σ fᵢ and unbiased covariance Σ = (1/(N−1)) Σ (fᵢ − μ)(fᵢ − μ)ᵀ of [N, D]."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_eigvals_clean(w: NDArray[np.float64]) -> NDArray[np.float64]:
    """Eigenvalues of a PSD matrix with rounding noise removed: those below
    ``D · eps · max|λ|`` (numerically zero, possibly negative) are set to 0."""
    tol = w.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 1e-300)
    return np.where(w > tol, w, 0.0)


def _sym_sqrt(s: NDArray[np.float64]) -> NDArray[np.float64]:
    """Principal square root of a symmetric PSD matrix."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(_psd_eigvals_clean(w))) @ v.T


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike
) -> float:
    """d² = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr((Σ₁Σ₂)^{1/2}) (see the module docstring)."""
    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    m2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {m1.shape}, sigma1 {s1.shape}, mu2 {m2.shape}, sigma2 {s2.shape}"
        )
    a = _sym_sqrt(s1)
    m = a @ s2 @ a
    eig = _psd_eigvals_clean(np.linalg.eigvalsh((m + m.T) / 2))
    tr_covmean = float(np.sqrt(eig).sum())
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance_from_features(features1: ArrayLike, features2: ArrayLike) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets ``[N₁, D]``, ``[N₂, D]``.

    When min(N₁, N₂) < D the covariances are low-rank and the trace term has an exact small form:
    with centred features Xᵢ (Σᵢ = XᵢᵀXᵢ / (Nᵢ − 1)), the non-zero eigenvalues of Σ₁Σ₂ are those of
    K Kᵀ / ((N₁ − 1)(N₂ − 1)) with K = X₁X₂ᵀ, so Tr((Σ₁Σ₂)^{1/2}) = ‖K‖_* / √((N₁−1)(N₂−1)) (the
    nuclear norm), an ``[N₁, N₂]`` problem instead of ``[D, D]``. Otherwise the statistics path
    :func:`frechet_distance` is used.
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D; got {f1.shape} and {f2.shape}")
    (n1, d), n2 = f1.shape, f2.shape[0]
    if min(n1, n2) < 2:
        raise ValueError("need at least 2 samples per set")
    if min(n1, n2) >= d or n1 * n2 > 50_000_000:
        return frechet_distance(*gaussian_statistics(f1), *gaussian_statistics(f2))
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    x1, x2 = f1 - mu1, f2 - mu2
    nuclear = float(np.linalg.svd(x1 @ x2.T, compute_uv=False).sum())
    tr_covmean = nuclear / float(np.sqrt((n1 - 1) * (n2 - 1)))
    diff = mu1 - mu2
    tr1 = float((x1 * x1).sum()) / (n1 - 1)
    tr2 = float((x2 * x2).sum()) / (n2 - 1)
    return float(diff @ diff + tr1 + tr2 - 2.0 * tr_covmean)
