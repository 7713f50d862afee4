"""The first-hitting sampler (Zheng et al. 2024, "Masked diffusion models are secretly
time-agnostic masked models and exploit inaccurate categorical sampling", Alg. 1).

Under the masked path each token's unmasking time τ^i has CDF κ (P(τ^i ≤ t) = κ_t),
independently. Given m masked tokens at time t, the next unmasking time s is the minimum of m
such times conditioned on exceeding t:

    P(s > r) = ((1 − κ_r) / (1 − κ_t))^m   ⇒   κ_s = 1 − (1 − κ_t) u^{1/m},  u ~ U(0, 1).

The token that unmasks at s is uniform among the masked ones, and its value is drawn from
p_θ(· | x_t) evaluated at time s. This simulates the reverse process exactly, one token per
network evaluation (NFE = number of masked tokens), for any schedule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unmask.sampling.common import process_logits, sample_categorical
from unmask.schedules import Schedule

__all__ = ["next_hitting_time", "first_hitting_step"]


def next_hitting_time(
    t: Tensor, num_masked: Tensor, schedule: Schedule, generator: torch.Generator | None
) -> Tensor:
    """Draw the next unmasking time s > t per row (t, num_masked: (B,))."""
    u = torch.rand(t.shape, generator=generator, device=t.device, dtype=torch.float64)
    m = num_masked.clamp_min(1).to(torch.float64)
    kt = schedule.kappa(t.to(torch.float64))
    ks = 1.0 - (1.0 - kt) * u.pow(1.0 / m)
    return torch.maximum(schedule.inverse(ks).to(torch.float64), t.to(torch.float64))


def first_hitting_step(
    x: Tensor,
    masked: Tensor,
    logits: Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    fp64: bool = False,
) -> Tensor:
    """Unmask one uniformly chosen masked position per row (rows with none are untouched)."""
    rows = masked.any(-1)
    u = torch.rand(masked.shape, generator=generator, device=x.device)
    pos = torch.where(masked, u, torch.full_like(u, -1.0)).argmax(-1)  # uniform masked index
    bidx = torch.arange(x.shape[0], device=x.device)
    sel = process_logits(logits[bidx, pos].float(), temperature, top_p)
    tok = sample_categorical(sel, generator, fp64=fp64)
    x = x.clone()
    x[bidx[rows], pos[rows]] = tok[rows]
    return x
