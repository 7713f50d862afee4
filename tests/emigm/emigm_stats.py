"""Two-sample statistics for the eMIGM tests (imported by the test modules)."""

from __future__ import annotations

import torch
from torch import Tensor


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Székely's energy distance 2E|X−Y| − E|X−X'| − E|Y−Y'| (V-statistic)."""
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def energy_test(x: Tensor, y: Tensor, permutations: int = 200, seed: int = 0
                ) -> tuple[float, float]:
    """(energy distance, permutation p-value) of H0: x and y come from one distribution."""
    z = torch.cat([x, y]).double()
    d = torch.cdist(z, z)
    n, total = len(x), len(z)
    g = torch.Generator().manual_seed(seed)

    def stat(perm: Tensor) -> float:
        a, b = perm[:n], perm[n:]
        return float(2 * d[a][:, b].mean() - d[a][:, a].mean() - d[b][:, b].mean())

    observed = stat(torch.arange(total))
    null = [stat(torch.randperm(total, generator=g)) for _ in range(permutations)]
    p = (1 + sum(s >= observed for s in null)) / (1 + permutations)
    return observed, p
