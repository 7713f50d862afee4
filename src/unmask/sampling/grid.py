"""Time-grid samplers: ``euler`` (DI Algorithm 1) and ``mdm`` (eMIGM eq. 6).

Both walk a uniform grid 0 = t_0 < t_1 < … < t_N = 1. In a step t → s a masked token is
unmasked with probability π(t, s) and, if so, drawn from the denoiser's p_θ(· | x_t);
clean tokens never change (the reverse process of a masked path cannot re-mask).

* ``euler``: the first-order Euler step of the CTMC with rate u_t = κ̇_t/(1 − κ_t)(p_θ − δ_{[M]})
  (DI §3.2, Algorithm 1): π = h κ̇_t / (1 − κ_t), clipped to [0, 1]. Tokens still masked after
  the last step take the argmax of p_θ (DI Algorithm 1, final line).
* ``mdm``: the exact marginal of the masked path, π = (κ_s − κ_t)/(1 − κ_t) (eMIGM eq. 6,
  the MDLM/ReMDM ancestral step); π = 1 at s = 1, so nothing is left masked.

Both sample the model's joint distribution as N → ∞; with finite N, tokens unmasked in the
same step are drawn independently given x_t (the factorisation error few-step samplers pay).

π depends on the grid only, so it is computed once for all N steps
(:func:`unmask_probabilities`); a step draws the jump set first and asks for logits only on
the rows where some token jumps (:func:`jump_sets`), then writes the draws in place
(:func:`grid_step`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from unmask.sampling.common import process_logits, sample_categorical
from unmask.schedules import Schedule

__all__ = ["unmask_probability", "unmask_probabilities", "jump_sets", "grid_step"]


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


def unmask_probabilities(method: str, schedule: Schedule, steps: int) -> list[float]:
    """[π(t_k, t_{k+1}) for k < N] on the uniform grid t_k = k/N (float64 grid)."""
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64).tolist()
    return [unmask_probability(method, schedule, grid[k], grid[k + 1]) for k in range(steps)]


def jump_sets(
    masked: Tensor, prob: float, *, last_argmax: bool, generator: torch.Generator | None
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Which masked tokens unmask in this step: each w.p. ``prob``, independently.

    Returns ``(jump, leftover, rows)``: the (B, L) jump set, the tokens left masked that take
    the argmax (``last_argmax``: euler's final step; else None) and the (B,) rows that change.
    """
    u = torch.rand(masked.shape, generator=generator, device=masked.device)
    jump = masked & (u < prob)
    if last_argmax:
        leftover = masked & ~jump
        return jump, leftover, masked.any(-1)
    return jump, None, jump.any(-1)


def grid_step(
    x: Tensor,
    jump: Tensor,
    leftover: Tensor | None,
    logits: Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    fp64: bool = False,
) -> Tensor:
    """Write the step's draws into x (B, L) in place: p_θ draws at ``jump``, argmax at
    ``leftover``. ``logits`` (B, L, V) need only be valid on rows that change."""
    if leftover is None or bool(jump.any()):
        sel = process_logits(logits[jump], temperature, top_p)
        x[jump] = sample_categorical(sel, generator, fp64=fp64)
    if leftover is not None:
        x[leftover] = logits[leftover].argmax(-1)
    return x
