"""Shared fixtures: a tiny enumerable distribution with its exact denoiser, and a noise band
for total-variation checks computed by sampling the target itself."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from unmask.exact import (  # noqa: E402
    ExactDenoiser,
    random_distribution,
    tv_noise_band,
)

# CI has its 2 cores to itself; on a shared workstation one thread avoids oversubscription,
# which slows small torch ops by 10x or more.
torch.set_num_threads(2 if os.environ.get("CI") else 1)


@pytest.fixture(scope="session")
def tiny() -> ExactDenoiser:
    """V = 3, L = 4: 81 sequences under a random, strongly correlated distribution."""
    g = torch.Generator().manual_seed(1234)
    return ExactDenoiser(random_distribution(3, 4, generator=g), 3, 4)


@pytest.fixture(scope="session")
def tv_band(tiny):
    """The 99.5th percentile of the TV of n exact samples from the target: what sampling noise
    alone produces. A sampler of the right distribution stays below it (up to the 0.5%)."""

    return lambda n: tv_noise_band(tiny, n)
