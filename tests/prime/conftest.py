"""Fixtures for MDM-Prime tests: a tiny distribution over C^L with its exact sub-token
denoiser (C = 5 tokens, ℓ = 2 digits of base b = 3, so 4 of the 9 digit pairs are invalid)."""

import pytest
import torch

from unmask.exact import random_distribution
from unmask.prime.exact import ExactPrimeDenoiser

torch.set_num_threads(1)


def make_exact(c: int, length: int, ell: int, seed: int) -> ExactPrimeDenoiser:
    g = torch.Generator().manual_seed(seed)
    return ExactPrimeDenoiser(random_distribution(c, length, generator=g), c, length, ell)


@pytest.fixture(scope="session")
def prime_tiny() -> ExactPrimeDenoiser:
    """C = 5, L = 3, ℓ = 2 (b = 3): 125 sequences, strongly correlated."""
    return make_exact(5, 3, 2, seed=4321)


def tv(den: ExactPrimeDenoiser, samples: torch.Tensor) -> float:
    """Total variation between the empirical distribution of ``samples`` (n, L) and p."""
    emp = torch.bincount(den.index(samples), minlength=den.probs.numel()).double()
    return 0.5 * float((emp / len(samples) - den.probs).abs().sum())


@pytest.fixture(scope="session")
def prime_tv_band(prime_tiny):
    """99.5th percentile of the TV of n exact samples from the target (sampling noise)."""

    def band(n: int) -> float:
        g = torch.Generator().manual_seed(77)
        tvs = sorted(tv(prime_tiny, prime_tiny.sample(n, g)) for _ in range(200))
        return tvs[int(0.995 * len(tvs)) - 1]

    return band
