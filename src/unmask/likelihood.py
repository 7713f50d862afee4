"""Likelihood bounds: the continuous-time negative ELBO of a masked model (MDLM eq. 10;
DI eq. 3 / eq. 10 with w(t) = κ̇_t / (1 − κ_t)) and the perplexity / bits per token derived from it.

For a clean sequence x (L tokens) and schedule κ,

    −log p_θ(x) ≤ NELBO(x)
        = ∫_0^1 κ̇_t / (1 − κ_t) · E_{x_t ~ p_t(·|x)} [ Σ_{i: x_t^i=[M]} −log p_θ(x^i | x_t) ] dt,

with equality when p_θ is the true conditional of the data distribution (the integral is then
the expectation, over uniformly random orders, of an exact autoregressive factorisation).
The integral is estimated after the change of variables κ = κ_t, then κ = 1 − (1 − v)²:

    NELBO(x) = ∫ 2 / (1 − v) · E[ Σ_{masked} −log p_θ(x^i | x_{t(κ(v))}) ] dv,
    v ∈ [v(κ_0), v(κ_1)],

with K stratified values v_k per sequence and t(κ) = κ^{-1}(κ). Why: the masked count at κ is
Binomial(L, 1 − κ), so with uniform t (or κ) the weighted sum has conditional variance
∝ 1/(1 − κ) and the estimator's variance diverges (logarithmically) at κ → 1, worse for
schedules whose κ̇/(1 − κ) blows up (cosine). Sampling κ with density ∝ (1 − κ)^{-1/2} makes
the variance finite for every schedule; the estimate stays unbiased. For an implicit-timestep
model the NELBO is the same for every schedule; for an explicit-timestep model the denoiser is
evaluated at t(κ) of the schedule it was trained with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from unmask.corruption import mask_independent
from unmask.losses import masked_cross_entropy
from unmask.schedules import Schedule
from unmask.schedules import get as get_schedule

__all__ = ["nelbo", "nelbo_with_stderr", "NelboEstimate", "perplexity", "bits_per_token"]


@dataclass
class NelboEstimate:
    """Per-sequence NELBO in nats (B,) and the Monte-Carlo standard error of each (B,)."""

    nelbo: Tensor
    stderr: Tensor
    num_tokens: int

    @property
    def per_token(self) -> float:
        """Mean NELBO per token (nats)."""
        return float(self.nelbo.mean()) / self.num_tokens

    @property
    def per_token_stderr(self) -> float:
        """Standard error of ``per_token`` (independent sequences and MC draws)."""
        b = self.nelbo.numel()
        # Between-sequence spread plus MC noise, both captured by the spread of the per-row values.
        spread = float(self.nelbo.std()) / math.sqrt(b) if b > 1 else float(self.stderr[0])
        return spread / self.num_tokens


@torch.no_grad()
def nelbo_with_stderr(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    mask_id: int,
    schedule: Schedule | str,
    num_samples: int,
    generator: torch.Generator | None = None,
    t_min: float = 0.0,
    t_max: float = 1.0,
    max_batch: int = 256,
    progress: bool = False,
) -> NelboEstimate:
    """NELBO of each sequence of ``x0`` (B, ...) with its MC standard error.

    ``t_min``/``t_max`` restrict the integral (a truncated bound, as eMIGM trains); the default
    [0, 1] is the full ELBO. ``max_batch`` bounds the rows per denoiser call: several MC
    samples of the same sequences are batched together (rows ``x0`` repeated k times), so a
    denoiser with per-row state (e.g. :class:`~unmask.models.ConditionedDenoiser` holding one
    label per sequence) must offer ``select_rows(idx)``; it is called with the row index of
    every batched row. A plain callable is assumed row-independent (the denoiser contract).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if x0.is_floating_point() or (x0.numel() and bool((x0 < 0).any() | (x0 >= mask_id).any())):
        lo, hi = (float(x0.min()), float(x0.max())) if x0.numel() else (0, 0)
        raise ValueError(f"x0 {tuple(x0.shape)} must hold clean token ids in [0, {mask_id}) "
                         f"(dtype {x0.dtype}, found [{lo:g}, {hi:g}])")
    if isinstance(schedule, str):
        schedule = get_schedule(schedule)
    b = x0.shape[0]
    n_tok = x0[0].numel()
    dev = x0.device
    v_lo, v_hi = (1.0 - math.sqrt(max(0.0, 1.0 - float(schedule.kappa(torch.tensor(
        tt, dtype=torch.float64))))) for tt in (t_min, t_max))
    width = v_hi - v_lo
    draws = torch.empty(num_samples, b, dtype=torch.float64, device=dev)
    per_call = max(1, max_batch // b)  # MC samples evaluated together in one batch
    select = getattr(denoiser, "select_rows", None)
    chunks = range(0, num_samples, per_call)
    for k0 in tqdm(chunks, disable=not progress, desc="nelbo", leave=False):
        ks = torch.arange(k0, min(k0 + per_call, num_samples), device=dev)
        u = torch.rand(len(ks), b, generator=generator, device=dev, dtype=torch.float64)
        v = (v_lo + width * (ks[:, None] + u) / num_samples).clamp(0.0, 1.0 - 1e-9).reshape(-1)
        kappa = 1.0 - (1.0 - v) ** 2  # (n·B,)
        t = schedule.inverse(kappa).to(torch.float64)
        xx = x0.repeat(len(ks), *([1] * (x0.dim() - 1)))
        x_t, masked = mask_independent(xx, kappa.float(), mask_id, generator=generator)
        den = denoiser
        if callable(select) and len(ks) > 1:  # per-row state (labels) repeated like the rows
            den = select(torch.arange(b, device=dev).repeat(len(ks)))
        logits = den(x_t, t.float())
        w = 2.0 * width / (1.0 - v)
        _, per_row = masked_cross_entropy(logits, xx, masked, w.float(), normalize="tokens")
        draws[k0:k0 + len(ks)] = (per_row.double() * n_tok).reshape(len(ks), b)
    mean = draws.mean(0)
    # Stratified draws: the plain MC standard error below is conservative.
    stderr = draws.std(0) / math.sqrt(num_samples) if num_samples > 1 else torch.zeros_like(mean)
    return NelboEstimate(mean, stderr, n_tok)


def nelbo(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    mask_id: int,
    schedule: Schedule | str,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Monte-Carlo estimate of the continuous-time negative ELBO of each sequence, in nats.

    Args:
        denoiser: ``denoiser(x_t, t) -> logits`` over the clean vocabulary.
        x0: (B, L) (or (B, ...)) clean token ids.
        mask_id: the mask token id.
        schedule: κ schedule the model was trained with (object or name).
        num_samples: number K of stratified Monte-Carlo times per sequence.
        generator: torch.Generator for reproducibility.

    Returns:
        FloatTensor (B,): NELBO(x) in nats (summed over the sequence's tokens).
    """
    return nelbo_with_stderr(
        denoiser, x0, mask_id=mask_id, schedule=schedule, num_samples=num_samples,
        generator=generator,
    ).nelbo


def perplexity(nelbo_nats: Tensor, num_tokens: int) -> float:
    """ELBO perplexity exp(Σ NELBO / Σ tokens) over a set of sequences."""
    return math.exp(float(nelbo_nats.sum()) / (nelbo_nats.numel() * num_tokens))


def bits_per_token(nelbo_nats: Tensor, num_tokens: int) -> float:
    """Mean NELBO in bits per token (bits per dimension for pixel-token models)."""
    return float(nelbo_nats.sum()) / (nelbo_nats.numel() * num_tokens) / math.log(2.0)
