"""Training losses: the unified masked cross-entropy of eMIGM eq. 7 / DI eq. 3 (eq. 10).

    L = E_{t ~ U[t_min, t_max]} E_{x_t ~ p_t(·|x_1)} [ w(t) Σ_{i: x_t^i=[M]} −log p_θ(x_1^i | x_t) ]

Weightings ``w(t)``:

* ``constant``: w = 1 (MaskGIT / eMIGM's choice);
* ``elbo``: w = κ̇_t / (1 − κ_t). With t_min = 0, t_max = 1 this is exactly the continuous-time
  negative ELBO (MDLM eq. 10; DI eq. 3 / eq. 10), an upper bound on −log p_θ(x_1).

Normalisation (``normalize``):

* ``tokens`` (default): each sequence's weighted sum is divided by its number of scored
  positions n (L, less the positions given clean by a conditional coupling), then averaged over
  the batch. With ``elbo`` weighting this is the NELBO per token, in nats, an unbiased estimate.
* ``masked``: the weighted sum over the whole batch divided by the total number of masked tokens
  (MaskGIT / MAR: the mean CE over masked tokens). Biased as an ELBO; the usual choice with w = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from unmask.corruption import (
    DEFAULT_T_MAX,
    DEFAULT_T_MIN,
    Masking,
    corrupt,
    keep_clean,
    sample_time,
)
from unmask.schedules import Schedule

__all__ = [
    "Weighting",
    "Normalize",
    "loss_weight",
    "masked_cross_entropy",
    "diffusion_loss",
    "LossOutput",
]

Weighting = Literal["constant", "elbo"]
Normalize = Literal["tokens", "masked"]
Denoiser = Callable[[Tensor, Tensor], Tensor]


def loss_weight(schedule: Schedule, t: Tensor, weighting: Weighting) -> Tensor:
    """w(t) per row: 1 (``constant``) or κ̇_t / (1 − κ_t) (``elbo``). With a per-position
    schedule (:class:`unmask.joint.ModalitySchedules`) the ``elbo`` weight is per position,
    (B, L): each token's own modality's κ̇/(1 − κ)."""
    if weighting == "constant":
        return torch.ones_like(t, dtype=torch.float32)
    if weighting == "elbo":
        return schedule.elbo_weight(t.to(torch.float32))
    raise ValueError(f"unknown weighting {weighting!r}; valid: constant, elbo")


def masked_cross_entropy(
    logits: Tensor,
    x0: Tensor,
    masked: Tensor,
    weight: Tensor | None = None,
    *,
    normalize: Normalize = "tokens",
    scored: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Weighted CE over masked positions.

    Args:
        logits: (B, ..., V) denoiser output (clean vocabulary only).
        x0: (B, ...) clean tokens.
        masked: (B, ...) bool, the positions that were masked.
        weight: (B,) per-row weight w(t), a per-position weight ((B, L) or like ``x0``), or
            None for 1.
        normalize: see the module docstring.
        scored: (B,) number of scorable positions per row (default: all positions).

    Returns:
        ``(loss, per_row)``: the scalar loss and each row's weighted CE sum divided by its
        ``scored`` count (the per-token NELBO of the row under ``elbo`` weighting).
    """
    b = x0.shape[0]

    ce = torch.zeros(x0.shape, dtype=torch.float32, device=logits.device)
    if masked.any():
        ce[masked] = F.cross_entropy(logits[masked].float(), x0[masked], reduction="none")
    if weight is not None and weight.dim() >= 2 and weight.numel() == x0.numel():
        # per position: weight each token's CE
        ce = ce * weight.reshape(x0.shape).to(ce)
        weight = None
    row_sum = ce.reshape(b, -1).sum(-1)
    if weight is not None:
        row_sum = row_sum * weight.to(row_sum)
    n = scored if scored is not None else torch.full((b,), x0[0].numel(), device=x0.device)
    per_row = row_sum / n.clamp_min(1).to(row_sum)
    if normalize == "tokens":
        loss = per_row.mean()
    elif normalize == "masked":
        loss = row_sum.sum() / masked.sum().clamp_min(1)
    else:
        raise ValueError(f"unknown normalize {normalize!r}; valid: tokens, masked")
    return loss, per_row


@dataclass
class LossOutput:
    loss: Tensor
    per_row: Tensor
    t: Tensor
    mask_ratio: Tensor


def diffusion_loss(
    denoiser: Denoiser,
    x0: Tensor,
    *,
    schedule: Schedule,
    mask_id: int,
    weighting: Weighting = "constant",
    normalize: Normalize = "tokens",
    t_min: float = DEFAULT_T_MIN,
    t_max: float = DEFAULT_T_MAX,
    masking: Masking = "independent",
    keep_ratio: float = 0.0,
    keep: Tensor | None = None,
    stratified: bool = True,
    generator: torch.Generator | None = None,
) -> LossOutput:
    """One Monte-Carlo sample of the unified objective (eMIGM eq. 7) for a batch ``x0`` (B, ...).

    Draws t ~ U[t_min, t_max] (stratified over the batch), masks x0 (``masking``), calls
    ``denoiser(x_t, t)`` and scores the masked positions. ``keep_ratio`` > 0 (or an explicit
    ``keep`` mask) gives the conditional coupling: those positions stay clean and are not scored.
    """
    b = x0.shape[0]
    t = sample_time(b, t_min=t_min, t_max=t_max, stratified=stratified, generator=generator,
                    device=x0.device)
    if keep is None and keep_ratio > 0:
        keep = keep_clean(tuple(x0.shape), keep_ratio, generator=generator, device=x0.device)
    x_t, masked = corrupt(x0, t, schedule, mask_id, masking=masking, keep=keep, generator=generator)
    logits = denoiser(x_t, t)
    scored = None
    if keep is not None:
        scored = (~keep).reshape(b, -1).sum(-1)
    loss, per_row = masked_cross_entropy(
        logits, x0, masked, loss_weight(schedule, t, weighting), normalize=normalize, scored=scored
    )
    return LossOutput(loss, per_row.detach(), t, masked.reshape(b, -1).float().mean(-1))
