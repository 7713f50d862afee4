"""Fixtures for MDM-Prime tests: a tiny distribution over C^L with its exact sub-token
denoiser (C = 5 tokens, ℓ = 2 digits of base b = 3, so 4 of the 9 digit pairs are invalid)."""

import pytest
import torch

from unmask.exact import tv_noise_band
from unmask.prime.exact import ExactPrimeDenoiser, make_exact

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def prime_tiny() -> ExactPrimeDenoiser:
    """C = 5, L = 3, ℓ = 2 (b = 3): 125 sequences, strongly correlated."""
    return make_exact(5, 3, 2, seed=4321)


@pytest.fixture(scope="session")
def prime_tv_band(prime_tiny):
    """99.5th percentile of the TV of n exact samples from the target (sampling noise)."""

    return lambda n: tv_noise_band(prime_tiny, n, seed=77)
