"""MaskGIT confidence-ordered sampling (Chang et al. 2022; DI §3.3 "MaskGIT-style sampling").

At step k of N (ratio r = (k+1)/N), every masked token is drawn from p_θ(· | x_t); the drawn
tokens are ranked by confidence

    c^i = log p_θ(x̂^i | x_t) + τ_k · g^i,   g^i ~ Gumbel(0, 1),   τ_k = τ (1 − r)

(the choice temperature τ, default 4.5, annealed linearly to 0; p_θ here is tempered but not
top-p truncated), and the n_k least confident
are re-masked, n_k = ⌊M (1 − κ_r)⌋ clipped to [1, (masked now) − 1], M the number of
initially masked tokens. With the ``cosine`` schedule 1 − κ_r = cos(π r / 2), MaskGIT's
mask schedule; this is the rule of diffusers' AmusedScheduler. The last step keeps all.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unmask.sampling.common import process_logits, sample_categorical
from unmask.schedules import Schedule

__all__ = ["maskgit_step"]


def maskgit_step(
    x: Tensor,
    masked: Tensor,
    logits: Tensor,
    *,
    k: int,
    steps: int,
    num_initially_masked: Tensor,
    schedule: Schedule,
    mask_id: int,
    temperature: float,
    top_p: float,
    choice_temperature: float,
    generator: torch.Generator | None,
    fp64: bool = False,
) -> Tensor:
    """One MaskGIT step from state x (B, L) with logits (B, L, V)."""
    tempered = process_logits(logits.float(), temperature)
    draw = sample_categorical(process_logits(tempered, 1.0, top_p), generator, fp64=fp64)
    pred = torch.where(masked, draw, x)
    if k == steps - 1:
        return pred
    ratio = (k + 1) / steps
    keep_masked_frac = 1.0 - float(schedule.kappa(torch.tensor(ratio, dtype=torch.float64)))
    n_mask = torch.floor(num_initially_masked * keep_masked_frac + 1e-9).long()
    n_mask = torch.minimum(masked.sum(-1) - 1, n_mask).clamp_min(1)  # AmusedScheduler's clip
    # Confidence from the tempered distribution before top-p truncation (truncation would
    # renormalise the kept tokens and erase the ranking among near-certain draws).
    logp = tempered.log_softmax(-1).gather(-1, draw[..., None])[..., 0]
    tau = choice_temperature * (1.0 - ratio)
    u = torch.rand(logp.shape, generator=generator, device=x.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
    conf = logp + tau * gumbel
    conf = torch.where(masked, conf, torch.full_like(conf, math.inf))
    # Re-mask the n_mask lowest-confidence positions of each row.
    ranks = conf.argsort(-1).argsort(-1)
    remask = ranks < n_mask[:, None]
    return torch.where(remask, torch.full_like(pred, mask_id), pred)
