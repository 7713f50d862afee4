"""Time-grid samplers: ``euler`` (DI Algorithm 1) and ``mdm`` (eMIGM eq. 6).

Both walk a uniform grid 0 = t_0 < t_1 < … < t_N = 1. In a step t → s a masked token is
unmasked with probability π(t, s) and, if so, drawn from the denoiser's p_θ(· | x_t);
clean tokens never change (the reverse process of a masked path cannot re-mask).

* ``euler``: the first-order Euler step of the CTMC with rate u_t = κ̇_t/(1 − κ_t)(p_θ − δ_{[M]})
  (DI eq. 12): π = h κ̇_t / (1 − κ_t), clipped to [0, 1]. Tokens still masked after the last
  step take the argmax of p_θ (DI Algorithm 1, final line).
* ``mdm``: the exact marginal of the masked path, π = (κ_s − κ_t)/(1 − κ_t) (eMIGM eq. 6,
  the MDLM/ReMDM ancestral step); π = 1 at s = 1, so nothing is left masked.

Both sample the model's joint distribution as N → ∞; with finite N, tokens unmasked in the
same step are drawn independently given x_t (the factorisation error few-step samplers pay).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from unmask.sampling.common import process_logits, sample_categorical
from unmask.schedules import Schedule

__all__ = ["unmask_probability", "grid_step"]


def unmask_probability(method: str, schedule: Schedule, t: float, s: float) -> float:
    """π(t, s): probability that a token masked at t is clean at s (see module docstring)."""
    if s >= 1.0 and method == "mdm":
        return 1.0
    tt = torch.tensor(t, dtype=torch.float64)
    if method == "euler":
        return float(((s - t) * schedule.elbo_weight(tt)).clamp(0.0, 1.0))
    if method == "mdm":
        ks, kt = schedule.kappa(torch.tensor(s, dtype=torch.float64)), schedule.kappa(tt)
        return float(((ks - kt) / (1.0 - kt).clamp_min(1e-12)).clamp(0.0, 1.0))
    raise ValueError(method)


def grid_step(
    x: Tensor,
    masked: Tensor,
    logits_fn: Callable[[], Tensor],
    prob: float,
    *,
    mask_id: int,
    last: bool,
    final_argmax: bool,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    fp64: bool = False,
) -> Tensor:
    """One step: unmask each masked token w.p. ``prob`` with a draw from p_θ(· | x_t).

    ``logits_fn`` is called lazily (only if some token may change), so a step in which no
    token is selected costs no network evaluation for implicit-timestep models.
    """
    u = torch.rand(masked.shape, generator=generator, device=x.device)
    jump = masked & (u < prob)
    leftover = masked & ~jump if (last and final_argmax) else None
    if not jump.any() and (leftover is None or not leftover.any()):
        return x
    logits = logits_fn()
    x = x.clone()
    if jump.any():
        sel = process_logits(logits[jump], temperature, top_p)
        x[jump] = sample_categorical(sel, generator, fp64=fp64)
    if leftover is not None and leftover.any():
        x[leftover] = logits[leftover].argmax(-1)
    return x
