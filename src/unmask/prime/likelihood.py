r"""ELBO, perplexity and bits per token of MDM-Prime models (partial masking).

Derivation
----------
Let x ∈ {0..C−1}^L and y = f_ℓ(x) ∈ {0..b−1}^{L×ℓ} its sub-tokens (:mod:`unmask.prime.subtokens`).
f_ℓ is a bijection onto the valid digit tuples, so p(x) = p_Y(f_ℓ(x)) and −log p(x) = −log p_Y(y):
a likelihood bound on y *is* one on x, in the same nats.

*Forward process.* Each of the N = L·ℓ sub-tokens is kept independently with probability κ_t
(masked, y_t^{i,j} = m, otherwise):

    q(y_t | y) = Π_{i,j} [κ_t δ(y_t^{i,j}, y^{i,j}) + (1 − κ_t) δ(y_t^{i,j}, m)]   (MDM-Prime §3.1)

— MDM's forward process on a sequence of N sub-tokens. Let τ^{i,j} be the time sub-token
(i, j) becomes clean; the τ's are i.i.d. with CDF κ.

*Reverse process.* Between t and t + dt each masked sub-token unmasks with probability
λ_t dt, λ_t = κ̇_t / (1 − κ_t), independently; two sub-tokens unmask together with probability
O(dt²). Every jump of the reverse CTMC therefore changes exactly one sub-token, y_t → y_t with
(i, j) set to v, and the model's rate for it is λ_t p_θ(y^{i,j} = v | y_t). The joint
parameterisation (MDM-Prime eq. 7) predicts the whole token, so the jump probability is its
marginal over the other digits,

    p_θ(y^{i,j} = v | y_t) = Σ_{c < C : f_ℓ(c)^j = v} p_θ(x^i = c | y_t),                  (†)

whose support respects the observed digits and ids < C.

*ELBO.* For a masked (absorbing) CTMC the path-space KL between the true and model reverse
processes reduces, per jump, to the cross-entropy of the jumping coordinate (MDLM eq. 10,
DI eq. 3 / eq. 10, applied to the N coordinates of y):

    −log p_θ(x) ≤ NELBO(x)
                = ∫_0^1 λ_t E_{q(y_t | y)} [ Σ_{(i,j): y_t^{i,j} = m} −log p_θ(y^{i,j} | y_t) ] dt

Each term is one sub-token transition, counted once, with its marginal (†). This is *not*
MDM-Prime eq. 5, which scores the joint log p_θ(y^i | y_t) of each token's ℓ sub-tokens: our
perplexities compare across ℓ, not with MDM-Prime Tab. 2 as the same estimator (the label
:data:`unmask.prime.pipeline.ESTIMATOR` says so wherever they are written). Scoring, once per
token, the joint −log p_θ(y^{i, masked} | y_t) of all masked digits of a token
miscounts the transitions: for L = 1, ℓ = 2 and the true p it gives
−log p(y) − ½ log[p(y) / (p(y¹) p(y²))], below −log p(y) whenever the digits are positively
associated — not a bound.

*Tightness.* Write the integrand through the τ's: sub-token (i, j) is masked at t iff
τ^{i,j} > t, and ∫ λ_t 1[τ > t] g(t) dt averages g over the time the sub-token is still masked
with the hazard of its own unmasking. The result (Ou et al. 2024; Zheng et al. 2024) is that
NELBO(x) = E_π[ Σ_k −log p_θ(y^{π_k} | y^{π_{<k}}) ], the average over uniformly random
orders π of the N sub-tokens of an any-order autoregressive NLL. If p_θ(· | y_t) is the true
conditional of the data, every order gives exactly −log p_Y(y), so NELBO(x) = −log p(x): the
bound is tight for the exact denoiser (:class:`unmask.prime.exact.ExactPrimeDenoiser`, the
check in ``tests/prime``). Validity filtering keeps p_θ normalised over the C^L valid
sequences, so NELBO bounds a proper model of x (unfiltered, mass on invalid tuples would be
lost and the bound loosened).

*ℓ = 1* gives b = C, one digit per token, p_θ(y^{i,1} | y_t) = p_θ(x^i | x_t): the plain MDM
NELBO of :mod:`unmask.likelihood`, term for term.

Estimation and units
--------------------
NELBO(x) is estimated with :func:`unmask.likelihood.nelbo_with_stderr` on the flat N-sub-token
sequence (mask id b) and the sub-token denoiser (†); its κ sampling with density
∝ (1 − κ)^{−1/2} keeps the variance finite here too (the masked count is Binomial(N, 1 − κ)).
The sum over the sequence is the same bound whatever ℓ is; it is reported per *token*:
nats/token = NELBO / L, perplexity exp(Σ NELBO / Σ L) and bits per token (bits per dimension
for pixel tokens) NELBO / (L ln 2) — so ℓ = 1 and ℓ > 1 are compared in the same units.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from unmask.likelihood import NelboEstimate, nelbo_with_stderr
from unmask.prime.subtokens import SubTokenCodec
from unmask.schedules import Schedule

__all__ = ["SubTokenMarginals", "prime_nelbo", "flat_subtokens"]


class SubTokenMarginals:
    """Turn a joint denoiser ``joint(y_t (B, L, ℓ), t) -> logits (B, L, C)`` into the
    sub-token denoiser (†) ``(y_t (B, L·ℓ), t) -> log p(y^{i,j} | y_t) (B, L·ℓ, b)``.

    The validity filter (MDM-Prime eq. 7) is applied here too, so any joint model (filtered
    or not) gives a normalised distribution over consistent ids.
    """

    def __init__(self, joint: Callable[[Tensor, Tensor], Tensor], codec: SubTokenCodec) -> None:
        self.joint, self.codec = joint, codec
        self.time_conditioned: bool = getattr(joint, "time_conditioned", True)

    def __call__(self, y_t: Tensor, t: Tensor) -> Tensor:
        yg = self.codec.group(y_t.reshape(y_t.shape[0], -1))
        logits = self.codec.filter_logits(self.joint(yg, t), yg)
        return self.codec.log_marginals(logits).reshape(*y_t.shape, self.codec.base)


def flat_subtokens(x0: Tensor, codec: SubTokenCodec) -> Tensor:
    """Tokens (B, ...) → flat sub-tokens (B, L·ℓ) in position-major order."""
    return codec.encode(x0.reshape(x0.shape[0], -1)).reshape(x0.shape[0], -1)


@torch.no_grad()
def prime_nelbo(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    codec: SubTokenCodec,
    schedule: Schedule | str,
    num_samples: int,
    generator: torch.Generator | None = None,
    t_min: float = 0.0,
    t_max: float = 1.0,
    max_batch: int = 256,
    progress: bool = False,
) -> NelboEstimate:
    """Sub-token NELBO (the continuous-time bound above, not MDM-Prime eq. 5) of each token
    sequence in ``x0`` (B, L) or (B, h, w), in nats, with its Monte-Carlo standard error;
    ``num_tokens`` of the result is L (per-token units).

    Args:
        denoiser: the sub-token denoiser (†), flat (B, L·ℓ) → (B, L·ℓ, b): a
            :class:`~unmask.prime.model.PrimeTransformer` (via
            :class:`~unmask.models.ConditionedDenoiser`), or :class:`SubTokenMarginals` around
            a joint denoiser.
        codec: the model's :class:`SubTokenCodec`.
        schedule, num_samples, generator, t_min, t_max, max_batch, progress: as in
            :func:`unmask.likelihood.nelbo_with_stderr`.
    """
    y0 = flat_subtokens(x0, codec)
    est = nelbo_with_stderr(
        denoiser, y0, mask_id=codec.mask_id, schedule=schedule, num_samples=num_samples,
        generator=generator, t_min=t_min, t_max=t_max, max_batch=max_batch, progress=progress,
    )
    return NelboEstimate(est.nelbo, est.stderr, num_tokens=x0[0].numel())
