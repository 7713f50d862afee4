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

from unmask.exact import ExactDenoiser, random_distribution  # noqa: E402

# CI has its 2 cores to itself; on a shared workstation one thread avoids oversubscription,
# which slows small torch ops by 10x or more.
torch.set_num_threads(2 if os.environ.get("CI") else 1)


@pytest.fixture(scope="session")
def tiny() -> ExactDenoiser:
    """V = 3, L = 4: 81 sequences under a random, strongly correlated distribution."""
    g = torch.Generator().manual_seed(1234)
    return ExactDenoiser(random_distribution(3, 4, generator=g), 3, 4)


def total_variation(den: ExactDenoiser, samples: torch.Tensor) -> float:
    """TV distance between the empirical distribution of ``samples`` and ``den.probs``."""
    idx = den.index(samples)
    emp = torch.bincount(idx, minlength=den.probs.numel()).double() / len(idx)
    return 0.5 * float((emp - den.probs).abs().sum())


@pytest.fixture(scope="session")
def tv_band(tiny):
    """The 99.5th percentile of the TV of n exact samples from the target: what sampling noise
    alone produces. A sampler of the right distribution stays below it (up to the 0.5%)."""

    def band(n: int) -> float:
        g = torch.Generator().manual_seed(99)
        tvs = sorted(total_variation(tiny, tiny.sample(n, g)) for _ in range(200))
        return tvs[int(0.995 * len(tvs)) - 1]

    return band
