"""MaskGIT confidence-ordered sampling (Chang et al. 2022; DI §3.3, MGM-style sampling).

At step k of N (ratio r = (k+1)/N), every masked token is drawn from p_θ(· | x_t); the drawn
tokens are ranked by confidence

    c^i = log p_θ(x̂^i | x_t) + τ_k · g^i,   g^i ~ Gumbel(0, 1),   τ_k = τ (1 − r)

(the choice temperature τ, default 4.5, annealed linearly to 0; p_θ here is tempered but not
top-p truncated), and the n_k least confident
are re-masked, n_k = ⌊M (1 − κ_r)⌋ clipped to [1, (masked now) − 1], M the number of
initially masked tokens. With the ``cosine`` schedule 1 − κ_r = cos(π r / 2), MaskGIT's
mask schedule; this is the rule of diffusers' AmusedScheduler. The last step keeps all.

Only masked positions are drawn (a gathered (M, V) block, not the full (B, L, V)); the draw
and log p_θ(x̂) come from one inverse-CDF pass, and the n_k lowest confidences are found
with one sort per row. Rows with nothing masked are left as they are.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unmask.sampling.common import (
    process_logits,
    sample_categorical,
    sample_categorical_with_logprob,
)
from unmask.schedules import Schedule

__all__ = ["maskgit_keep_masked", "maskgit_step"]


def maskgit_keep_masked(schedule: Schedule, steps: int) -> list[float]:
    """[1 − κ_{(k+1)/N} for k < N]: the fraction of the initial masks kept after step k."""
    r = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    return (1.0 - schedule.kappa(r)).tolist()


def maskgit_step(
    x: Tensor,
    masked: Tensor,
    logits: Tensor,
    *,
    k: int,
    steps: int,
    num_initially_masked: Tensor,
    keep_masked: float,
    mask_id: int,
    temperature: float,
    top_p: float,
    choice_temperature: float,
    generator: torch.Generator | None,
    fp64: bool = False,
) -> Tensor:
    """One MaskGIT step, writing into x (B, L) in place; ``logits`` (B, L, V) need only be
    valid on rows with a masked token. ``keep_masked`` = 1 − κ_{(k+1)/N}."""
    tempered = process_logits(logits[masked], temperature)  # (M, V)
    if k == steps - 1:
        x[masked] = sample_categorical(process_logits(tempered, 1.0, top_p), generator,
                                       fp64=fp64)
        return x
    if top_p < 1.0:
        draw = sample_categorical(process_logits(tempered, 1.0, top_p), generator, fp64=fp64)
        # Confidence from the tempered distribution before top-p truncation (truncation would
        # renormalise the kept tokens and erase the ranking among near-certain draws).
        logp = tempered.float().log_softmax(-1).gather(-1, draw[:, None])[:, 0]
    else:
        draw, logp = sample_categorical_with_logprob(tempered, generator, fp64=fp64)
    x[masked] = draw
    n_masked = masked.sum(-1)
    n_mask = torch.floor(num_initially_masked * keep_masked + 1e-9).long()
    n_mask = torch.minimum(n_masked - 1, n_mask).clamp_min(1)  # AmusedScheduler's clip
    tau = choice_temperature * (1.0 - (k + 1) / steps)
    u = torch.rand(logp.shape, generator=generator, device=x.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
    conf = torch.full(x.shape, math.inf, device=x.device)
    conf[masked] = logp.float() + tau * gumbel
    # Re-mask the n_mask lowest-confidence positions of each row that had a masked token.
    cut = conf.sort(-1).values.gather(-1, (n_mask - 1)[:, None])
    remask = (conf <= cut) & (n_masked > 0)[:, None]
    return x.masked_fill_(remask, mask_id)
