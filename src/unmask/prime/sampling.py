"""Sampling MDM-Prime over sub-tokens, and the idle-step ratio (ISR).

State: y_t (B, L, ℓ), each sub-token a digit 0..b−1 or the mask id b. The denoiser is a
*joint* denoiser ``denoiser(y_t (B, L, ℓ), t (B,)) -> logits (B, L, C)`` over full tokens
(:meth:`PrimeTransformer.joint`, :class:`~unmask.prime.exact.ExactPrimeDenoiser.joint`).

Step t → s of the grid methods (``mdm``: π = (κ_s − κ_t)/(1 − κ_t), eMIGM eq. 6; ``euler``:
π = (s − t) κ̇_t/(1 − κ_t), DI Algorithm 1 — π from :func:`unmask.sampling.grid.unmask_probability`):

1. every masked *sub-token* is selected independently with probability π;
2. at every position with a selected sub-token a full token is drawn from the filtered joint
   p_θ(x^i | y_t) (MDM-Prime eq. 7: ids inconsistent with the position's observed sub-tokens have
   probability 0), with temperature / top-p and Gumbel-max noise in float64 by default;
3. the selected sub-tokens take that token's digits; all other sub-tokens are carried over
   unchanged (observed ones never change, unselected masked ones stay masked).

Revealing a subset J of a token's digits from one joint draw samples their joint marginal
p_θ(y^{i,J} | y_t) exactly; digits of different positions are independent given y_t (the
usual factorisation error of a finite step, vanishing as steps → ∞). Every state stays
consistent with some valid id < C, so the filter never empties a row. ``euler``'s last step
takes the argmax of the filtered joint for positions that still have masked digits.

``first_hitting`` (Zheng et al. 2024, Alg. 1, at the sub-token level) is exact: with m masked
sub-tokens at t, the next unmasking time has κ_s = 1 − (1 − κ_t) u^{1/m}; one uniformly chosen
masked sub-token (i, j) is revealed with a digit from its marginal p_θ(y^{i,j} | y_t) (digit j of
a full token drawn from the filtered joint at time s).

Idle-step ratio (MDM-Prime §1, Fig. 1; eq. (A6), App. A.1.1): the fraction of sampling steps in
which the sequence fed to the network does not change, y_s = y_t, so the next step re-processes an
identical input. It is recorded per row (``idle_steps``) and averaged over the batch, as
:attr:`unmask.sampling.SampleResult.idle_step_ratio` does for plain MDM. ``idle_steps_token``
also records steps in which no *token* becomes fully revealed (the decoded sequence, partially
revealed tokens shown as masked, does not change); for ℓ = 1 both coincide.

Closed forms for the ``mdm`` sampler from an all-masked start. With p_k the probability that a
given sub-token is revealed in step k (p_k = π_k Π_{i<k}(1 − π_i); Δκ_k for κ_0 = 0), sub-tokens
independent:

    E[ISR] = 1/N Σ_k (1 − p_k)^{L ℓ},      E[ISR_token] = 1/N Σ_k (1 − (F_k^ℓ − F_{k−1}^ℓ))^L,

F_k = Σ_{i ≤ k} p_i. For linear κ and plain MDM (ℓ = 1), (1 − 1/N)^L ≈ e^{−L/N}: 37 % idle steps
when N = L, the figure MDM-Prime quotes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from unmask.prime.subtokens import SubTokenCodec
from unmask.sampling.common import (
    Evaluator,
    Guidance,
    GuidanceSchedule,
    check_sampler_args,
    process_logits,
)
from unmask.sampling.common import sample_categorical as _sample_categorical
from unmask.sampling.first_hitting import next_hitting_time
from unmask.sampling.grid import unmask_probability
from unmask.schedules import Schedule
from unmask.schedules import get as get_schedule

__all__ = [
    "METHODS",
    "PrimeSampleResult",
    "sample_prime",
    "step_reveal_probabilities",
    "expected_isr",
    "expected_isr_token",
]

METHODS = ("mdm", "euler", "first_hitting")


@dataclass
class PrimeSampleResult:
    """Output of :func:`sample_prime`.

    Attributes:
        tokens: (B, L) decoded samples (ids < C).
        subtokens: (B, L, ℓ) final sub-tokens.
        nfe: network evaluations run (a CFG unconditional pass counts as one).
        steps: sampler steps taken.
        idle_steps: (B,) steps in which a row's sub-token state did not change (MDM-Prime ISR).
        idle_steps_token: (B,) steps in which no token of the row became fully revealed.
        seconds: wall time.
        trajectory: (S+1, B, L, ℓ) states after each step (``return_trajectory``), else None.
        nfe_label: eMIGM's NFE notation (steps × guidance factor).
    """

    tokens: Tensor
    subtokens: Tensor
    nfe: int
    steps: int
    idle_steps: Tensor
    idle_steps_token: Tensor
    seconds: float
    nfe_label: str = ""
    trajectory: Tensor | None = None

    @property
    def idle_step_ratio(self) -> float:
        """MDM-Prime's ISR: fraction of steps leaving y_t unchanged, averaged over rows."""
        return float(self.idle_steps.double().mean() / max(self.steps, 1))

    @property
    def idle_step_ratio_token(self) -> float:
        """Fraction of steps in which no token became fully revealed, averaged over rows."""
        return float(self.idle_steps_token.double().mean() / max(self.steps, 1))


def _check_init(y_init: Tensor | None, shape: tuple[int, int, int], codec: SubTokenCodec,
                device: torch.device | str | None) -> Tensor:
    if y_init is None:
        return torch.full(shape, codec.mask_id, dtype=torch.long, device=device)
    if tuple(y_init.shape) != shape:
        raise ValueError(f"y_init has shape {tuple(y_init.shape)}, expected (B, L, ell) = {shape}")
    if y_init.dtype != torch.long or bool((y_init < 0).any() | (y_init > codec.mask_id).any()):
        raise ValueError(f"y_init must be int64 sub-tokens in [0, mask_id={codec.mask_id}]")
    if not bool(codec.valid_mask(y_init).any(-1).all()):
        raise ValueError("y_init has a position whose observed sub-tokens match no token id < C")
    return y_init.clone()


def _draw(logits: Tensor, y_pos: Tensor, codec: SubTokenCodec, temperature: float, top_p: float,
          generator: torch.Generator | None, fp64: bool) -> Tensor:
    """Full tokens (n,) drawn from the filtered, processed joint of n positions."""
    filt = codec.filter_logits(logits.double() if fp64 else logits.float(), y_pos)
    return _sample_categorical(process_logits(filt, temperature, top_p), generator, fp64=fp64)


def sample_prime(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    *,
    codec: SubTokenCodec,
    batch_size: int,
    seq_len: int,
    method: str = "mdm",
    steps: int = 128,
    schedule: Schedule | str = "linear",
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    y_init: Tensor | None = None,
    cfg_scale: float = 0.0,
    cfg_schedule: GuidanceSchedule = "constant",
    cfg_interval: tuple[float, float] = (0.0, 1.0),
    uncond_denoiser: Callable[[Tensor, Tensor], Tensor] | None = None,
    final_argmax: bool = True,
    fp64_gumbel: bool = True,
    cache: bool = True,
    return_trajectory: bool = False,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> PrimeSampleResult:
    """Sample B sequences of L tokens through ℓ-digit partial unmasking (module docstring).

    Args:
        denoiser: joint denoiser (B, L, ℓ) → (B, L, C) logits; ``time_conditioned = False``
            lets unchanged states reuse the last evaluation; ``cond_and_uncond`` enables CFG.
        codec: the :class:`SubTokenCodec` (C, ℓ, b).
        batch_size, seq_len: B and L (tokens).
        method: ``mdm`` | ``euler`` | ``first_hitting`` (``steps`` unused by the latter).
        steps: N, uniform grid steps.
        schedule: κ schedule (object or name).
        temperature, top_p: applied to the (guided, filtered) joint before each draw.
        generator: torch.Generator for every random draw.
        y_init: (B, L, ℓ) sub-tokens, some observed (conditional generation); kept fixed.
        cfg_scale, cfg_schedule, cfg_interval, uncond_denoiser: classifier-free guidance as in
            :func:`unmask.sampling.sample` (the filter is applied after guidance).
        final_argmax: ``euler`` only — argmax for digits still masked after the last step.
        fp64_gumbel: draw the Gumbel noise in float64 (default: large C makes float32 noise
            miss tokens of probability below ~1e-7).
        cache, return_trajectory, device, progress: as in :func:`unmask.sampling.sample`.
    """
    schedule = check_sampler_args(
        method, METHODS, steps, temperature, top_p, schedule, kind="prime sampling"
    )
    if device is None and y_init is not None:
        device = y_init.device
    y = _check_init(y_init, (batch_size, seq_len, codec.ell), codec, device)
    dev, m_id, C = y.device, codec.mask_id, codec.vocab_size
    ev = Evaluator(denoiser, Guidance(cfg_scale, cfg_schedule, tuple(cfg_interval)),
                   uncond_denoiser, cache=cache)

    def logits_at(yy: Tensor, tt: Tensor) -> Tensor:
        out = ev(yy, tt)
        if out.shape != (batch_size, seq_len, C):
            raise ValueError(f"joint denoiser returned shape {tuple(out.shape)}, expected "
                             f"(B, L, C) = {(batch_size, seq_len, C)}")
        return out

    traj = [y.clone()] if return_trajectory else None
    idle = torch.zeros(batch_size, dtype=torch.long, device=dev)
    idle_tok = torch.zeros_like(idle)
    n_steps = 0
    bidx = torch.arange(batch_size, device=dev)
    start = time.perf_counter()

    def record(prev: Tensor, new: Tensor) -> None:
        nonlocal n_steps
        idle.add_((prev == new).flatten(1).all(-1).long())
        full_prev, full_new = (prev != m_id).all(-1), (new != m_id).all(-1)
        idle_tok.add_((full_prev == full_new).all(-1).long())
        n_steps += 1
        if traj is not None:
            traj.append(new.clone())

    if method == "first_hitting":
        t = torch.zeros(batch_size, dtype=torch.float64, device=dev)
        total = int((y == m_id).flatten(1).sum(-1).max())
        for _ in tqdm(range(total), disable=not progress, desc="prime first_hitting",
                      leave=False):
            masked = (y == m_id).flatten(1)  # (B, L·ℓ)
            m = masked.sum(-1)
            if not bool(m.any()):
                break
            t = torch.where(m > 0, next_hitting_time(t, m, schedule, generator), t)
            logits = logits_at(y, t.float())
            u = torch.rand(masked.shape, generator=generator, device=dev)
            flat = torch.where(masked, u, torch.full_like(u, -1.0)).argmax(-1)
            pos, slot = flat // codec.ell, flat % codec.ell
            tok = _draw(logits[bidx, pos], y[bidx, pos], codec, temperature, top_p, generator,
                        fp64_gumbel)
            digit = codec.encode(tok).gather(-1, slot[:, None])[:, 0]
            new = y.clone()
            rows = m > 0
            new[bidx[rows], pos[rows], slot[rows]] = digit[rows]
            record(y, new)
            y = new
    else:
        grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64).tolist()
        for k in tqdm(range(steps), disable=not progress, desc=f"prime {method}", leave=False):
            t, s = grid[k], grid[k + 1]
            masked = y == m_id
            if not bool(masked.any()):
                record(y, y)
                continue
            prob = unmask_probability(method, schedule, t, s)
            u = torch.rand(masked.shape, generator=generator, device=dev)
            jump = masked & (u < prob)
            left_pos = None
            if method == "euler" and final_argmax and k == steps - 1:
                left_pos = (masked & ~jump).any(-1)  # (B, L): these take the argmax token
            need = jump.any(-1) if left_pos is None else jump.any(-1) | left_pos
            if not bool(need.any()):
                record(y, y)
                continue
            logits = logits_at(y, torch.full((batch_size,), t, device=dev))
            y_pos = y[need]
            tok = _draw(logits[need], y_pos, codec, temperature, top_p, generator, fp64_gumbel)
            reveal = jump[need]
            if left_pos is not None:
                lp = left_pos[need]
                amax = codec.filter_logits(logits[need].double(), y_pos).argmax(-1)
                tok = torch.where(lp, amax, tok)
                reveal = reveal | (lp[:, None] & (y_pos == m_id))
            new = y.clone()
            new[need] = torch.where(reveal, codec.encode(tok), y_pos)
            record(y, new)
            y = new

    return PrimeSampleResult(
        tokens=codec.decode(y),
        subtokens=y,
        nfe=ev.nfe,
        steps=n_steps,
        idle_steps=idle,
        idle_steps_token=idle_tok,
        seconds=time.perf_counter() - start,
        nfe_label=ev.nfe_label,
        trajectory=torch.stack(traj) if traj is not None else None,
    )


def step_reveal_probabilities(schedule: Schedule | str, steps: int,
                              method: str = "mdm") -> Tensor:
    """p_k (N,), float64: probability that a sub-token masked at the start is revealed in step
    k of the grid sampler (π from :func:`unmask.sampling.grid.unmask_probability`)."""
    if isinstance(schedule, str):
        schedule = get_schedule(schedule)
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64).tolist()
    pi = torch.tensor([unmask_probability(method, schedule, grid[k], grid[k + 1])
                       for k in range(steps)], dtype=torch.float64)
    survive = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1.0 - pi, 0)[:-1]])
    return pi * survive


def expected_isr(schedule: Schedule | str, steps: int, num_subtokens: int,
                 method: str = "mdm") -> float:
    """E[ISR] = 1/N Σ_k (1 − p_k)^n for n independently unmasked units (n = L·ℓ sub-tokens;
    n = L for plain MDM)."""
    p = step_reveal_probabilities(schedule, steps, method)
    return float(((1.0 - p) ** num_subtokens).mean())


def expected_isr_token(schedule: Schedule | str, steps: int, seq_len: int, ell: int,
                       method: str = "mdm") -> float:
    """E[fraction of steps in which no token becomes fully revealed] for L tokens of ℓ digits:
    a token completes in step k with probability F_k^ℓ − F_{k−1}^ℓ, F the CDF of p_k."""
    p = step_reveal_probabilities(schedule, steps, method)
    cdf = torch.cumsum(p, 0).clamp(max=1.0)
    prev = torch.cat([torch.zeros(1, dtype=torch.float64), cdf[:-1]])
    q = cdf**ell - prev**ell
    return float(((1.0 - q) ** seq_len).mean())
