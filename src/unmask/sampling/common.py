"""Helpers shared by every sampler: logit processing, categorical draws, and the guided,
cached denoiser evaluation that counts network function evaluations (NFE).

Classifier-free guidance (DI §3.4, eMIGM §3.2):

    logits = (1 + w_t) · cond − w_t · uncond,

where the unconditional pass uses a learned null class or the mask token as the condition,
and w_t follows a guidance schedule:

* ``constant``: w_t = w;
* ``linear``:   w_t = w · t (guidance grows as tokens are revealed, 0 at t = 0, w at t = 1);
* ``interval``: w_t = w for t ∈ [t_lo, t_hi] and 0 elsewhere (eMIGM's CFG time interval,
  written in this package's time: eMIGM's interval [a, b] in mask time is [1 − b, 1 − a] here).

Outside the guidance interval the unconditional pass is skipped entirely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor

__all__ = [
    "Denoiser",
    "GuidanceSchedule",
    "Guidance",
    "process_logits",
    "sample_categorical",
    "Evaluator",
]

GuidanceSchedule = Literal["constant", "linear", "interval"]


class Denoiser(Protocol):
    """``denoiser(x_t, t) -> logits`` over the V clean tokens.

    Optional attributes a sampler uses when present:
      * ``time_conditioned: bool`` — False for implicit-timestep models (output depends on x_t
        only), which lets samplers skip the network on steps where the state did not change;
      * ``cond_and_uncond(x_t, t) -> (cond, uncond)`` — one batched forward for CFG.
    """

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance settings (see the module docstring)."""

    scale: float = 0.0
    schedule: GuidanceSchedule = "constant"
    interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "linear", "interval"):
            raise ValueError(
                f"unknown cfg schedule {self.schedule!r}; valid: constant, linear, interval"
            )
        lo, hi = self.interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"cfg interval must satisfy 0 <= lo <= hi <= 1, got {self.interval}")

    def weight(self, t: float) -> float:
        """w_t at (scalar) time t."""
        if self.scale == 0.0:
            return 0.0
        if self.schedule == "constant":
            return self.scale
        if self.schedule == "linear":
            return self.scale * t
        lo, hi = self.interval
        return self.scale if lo <= t <= hi else 0.0


def process_logits(logits: Tensor, temperature: float = 1.0, top_p: float = 1.0) -> Tensor:
    """Temperature then nucleus (top-p) filtering; filtered entries become −inf.

    Top-p keeps the smallest set of most likely tokens whose probability mass reaches p
    (Holtzman et al. 2020); the most likely token is always kept.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature != 1.0:
        logits = logits / temperature
    if top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass strictly before it already reaches p.
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_categorical(
    logits: Tensor, generator: torch.Generator | None = None, *, fp64: bool = False
) -> Tensor:
    """Draw one index per row of ``logits`` (..., V) by the Gumbel-max trick.

    ``fp64=True`` draws the Gumbel noise in float64: with float32 noise, tokens with
    probability below ~1e-7 are never drawn, which biases samples of large vocabularies
    (noted by MDM-Prime / Zheng et al. 2024).
    """
    dtype = torch.float64 if fp64 else torch.float32
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=dtype)
    gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(dtype).tiny)))
    return (logits.to(dtype) + gumbel).argmax(-1)


@dataclass
class Evaluator:
    """Evaluates a (guided) denoiser, caching when the state is unchanged and counting NFE.

    An implicit-timestep denoiser (``time_conditioned = False``) gives the same logits for the
    same x_t, so the network is skipped when x_t equals the last evaluated state (the MDLM
    cache): samples are bit-identical to an uncached run. Explicit-timestep models are
    evaluated at every step.
    """

    denoiser: Callable[[Tensor, Tensor], Tensor]
    guidance: Guidance = field(default_factory=Guidance)
    uncond_denoiser: Callable[[Tensor, Tensor], Tensor] | None = None
    cache: bool = True
    nfe: int = 0  # network evaluations of the batch, an unconditional pass counting as one
    steps: int = 0  # calls (sampler steps)
    guided_steps: int = 0  # steps whose logits used guidance
    _x: Tensor | None = None
    _cond: Tensor | None = None
    _uncond: Tensor | None = None

    def __post_init__(self) -> None:
        self.cache = self.cache and not getattr(self.denoiser, "time_conditioned", True)
        if self.guidance.scale != 0.0 and self.uncond_denoiser is None and not hasattr(
            self.denoiser, "cond_and_uncond"
        ):
            raise ValueError(
                "cfg_scale != 0 needs a denoiser with cond_and_uncond() (e.g. "
                "unmask.models.denoiser.ConditionedDenoiser) or an uncond_denoiser"
            )

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """Guided logits (float) at state x (B, L) and per-row time t (B,)."""
        self.steps += 1
        w = self.guidance.weight(float(t.reshape(-1)[0])) if self.guidance.scale else 0.0
        hit = self.cache and self._x is not None and torch.equal(self._x, x)
        need_uncond = w != 0.0 and (not hit or self._uncond is None)
        if not hit or need_uncond:
            if need_uncond:
                if hasattr(self.denoiser, "cond_and_uncond") and self.uncond_denoiser is None:
                    self._cond, self._uncond = self.denoiser.cond_and_uncond(x, t)
                else:
                    self._cond = self.denoiser(x, t)
                    self._uncond = self.uncond_denoiser(x, t)
                self.nfe += 2
            else:
                self._cond, self._uncond = self.denoiser(x, t), None
                self.nfe += 1
            self._x = x.clone() if self.cache else None
        if w == 0.0:
            return self._cond
        self.guided_steps += 1
        return (1.0 + w) * self._cond - w * self._uncond

    @property
    def nfe_label(self) -> str:
        """eMIGM's NFE notation: steps × (1 + fraction of steps with guidance), e.g. '16×1.2'."""
        frac = self.guided_steps / max(self.steps, 1)
        return f"{self.steps}×{1 + frac:.2g}" if frac else f"{self.steps}"
