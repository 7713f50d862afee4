"""eMIGM's training and sampling recipe, written in the foundation's terms (no second copy of
the math: schedules, time sampling, masking, weights and CFG are the foundation's).

Conventions. eMIGM writes the mask time s ∈ [0, 1] (s = 1 all masked) and the mask ratio γ_s;
this package writes t = 1 − s and κ_t = 1 − γ_{1−t} (``unmask.schedules``). eMIGM's names map as

    eMIGM ``mask_strategy``   γ_s                          foundation schedule
    linear                    s                            linear   (κ = t)
    cosine                    cos(π/2 (1 − s))             cosine   (κ = 1 − cos(πt/2))
    exp                       1 − e^{−5s}                  exp      (κ = e^{−5(1−t)})
    log                       log(1 + (e⁵ − 1) s) / 5      logexp

Unified objective (eMIGM eq. 7): L = ∫_{t_min}^{t_max} w(t) E[Σ_{masked} −log p_θ] dt with
w = 1 (``constant``: MaskGIT / eMIGM's choice) or the MDM weight γ'_s/γ_s = κ̇_t/(1 − κ_t)
(``elbo``: ``unmask.losses.loss_weight``).

Time truncation (eMIGM's "t_min"): masks are drawn only at mask times s ≥ s_min, i.e. mask
ratios γ ≥ γ(s_min) — ``emigm_time_range`` gives our t ∈ [0, 1 − s_min]. eMIGM's code also maps
s to (1 − 10⁻³)s + 10⁻³ (never an unmasked sequence) and *clamps* s to s_min (a point mass of
probability s_min at s_min); the foundation draws t uniformly on the truncated interval instead.

CFG with a time interval (eMIGM §5.3): the package's guidance (1 + w)·cond − w·uncond, where
eMIGM's (MAR's) scale s means w = s − 1 (its code: ε_u + s(ε_c − ε_u)), is applied only at the
steps whose end time s_{k+1} lies in (a, b] of eMIGM's mask time, on its grid
s_k = 1 − k(1 − ε)/N (:func:`emigm_guided_steps`). Within the interval the weight is w
(``constant``, eMIGM's main results) or w·r with r the fraction of tokens unmasked after the
step (``linear``, eMIGM's/MAR's code; :func:`emigm_cfg_weights`). For the foundation's sampler,
:func:`emigm_cfg_interval` returns the interval of *our* time (its ``cfg_schedule="interval"``
tests the step's start t_k = k/N) that guides exactly those steps. NFE is reported as eMIGM
does, N × (1 + guided/N), e.g. 16×1.2.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from unmask import schedules
from unmask.corruption import emigm_time_range
from unmask.training import TrainConfig

__all__ = ["EMIGM_SCHEDULES", "emigm_train_config", "emigm_guided_steps", "emigm_cfg_interval",
           "EMIGM_CFG_SCHEDULES", "emigm_cfg_weights", "sampler_setup", "expected_nfe"]

#: eMIGM ``mask_strategy`` → foundation schedule name.
EMIGM_SCHEDULES: dict[str, str] = {"linear": "linear", "cosine": "cosine", "exp": "exp",
                                   "log": "logexp", "logexp": "logexp"}
_EPS = 1e-3  # eMIGM: p_mask = (1 − ε) s + ε, so no training row is left unmasked


def emigm_train_config(*, schedule: str = "exp", weighting: str = "constant",
                       t_min: float = 0.0, **train: Any) -> TrainConfig:
    """A :class:`TrainConfig` for eMIGM's objective.

    Args:
        schedule: an eMIGM mask strategy (``exp``, ``log``, ``linear``, ``cosine``) or a
            foundation schedule name.
        weighting: ``constant`` (w = 1) or ``elbo`` (the MDM weight).
        t_min: eMIGM's time truncation s_min in *mask time* (eMIGM: 0.2); masks are then drawn
            at ratios ≥ γ(s_min).
        **train: any other :class:`TrainConfig` field (``t_min``/``t_max`` are derived here).
    """
    if "t_max" in train:
        raise ValueError("t_max is derived from eMIGM's t_min; do not set it")
    lo, hi = emigm_time_range(max(t_min, _EPS))
    return TrainConfig(schedule=EMIGM_SCHEDULES.get(schedule, schedule), weighting=weighting,
                       t_min=lo, t_max=hi, **train)


def emigm_guided_steps(a: float, b: float, steps: int, eps: float = 1e-5) -> list[int]:
    """Indices k of the steps eMIGM guides: s_{k+1} ∈ (a, b] on s_k = 1 − k(1 − ε)/N (eMIGM's
    ``sample_tokens``: ``torch.linspace(1, eps, N + 1)``, ``cfg_t_min < s <= cfg_t_max``)."""
    if not 0.0 <= a <= b <= 1.0:
        raise ValueError(f"need 0 <= a <= b <= 1, got ({a}, {b})")
    out = []
    for k in range(steps):
        s = 1.0 - (k + 1) * (1.0 - eps) / steps
        if a < s <= b:
            out.append(k)
    return out


def emigm_cfg_interval(a: float, b: float, steps: int, eps: float = 1e-5) -> tuple[float, float]:
    """Our-time interval [lo, hi] for ``cfg_schedule="interval"`` that guides exactly the steps
    of :func:`emigm_guided_steps` on the foundation's grid t_k = k/N (bounds half a step outside
    the first and last guided t_k, so float rounding cannot move a boundary). Steps guided by
    eMIGM are contiguous; none guided gives (1, 1), which no step start reaches."""
    ks = emigm_guided_steps(a, b, steps, eps)
    if not ks:
        return (1.0, 1.0)
    half = 0.5 / steps
    return (max(0.0, ks[0] / steps - half), min(1.0, ks[-1] / steps + half))


#: eMIGM's CFG schedules inside its interval (its code also has power/cubic/exp/cosine variants)
EMIGM_CFG_SCHEDULES = ("constant", "linear")


def emigm_cfg_weights(w: float, schedule: str, masked_after: Tensor) -> Tensor:
    """Per-row guidance weight (B,) of a guided step, package convention (w = 0: none).

    eMIGM's ``sample_tokens`` (models/emigm.py): ``cfg_iter = 1 + (cfg − 1)·r`` with r = 1
    (``constant``) or r = (L − #masked)/L, the fraction of tokens unmasked *after* the step
    (``linear``: the mask is updated before the schedule is read). With w = cfg − 1 that is
    w·r. eMIGM's rows unmask equal counts and read r from row 0; ours are independent, so r is
    per row. ``masked_after``: (B, L) bool, the positions still masked after this step.
    """
    if schedule == "constant":
        return torch.full((masked_after.shape[0],), float(w), device=masked_after.device)
    if schedule == "linear":
        return float(w) * (~masked_after).float().mean(-1)
    raise ValueError(f"unknown eMIGM cfg schedule {schedule!r}; valid: "
                     f"{', '.join(EMIGM_CFG_SCHEDULES)}")


def sampler_setup(
    num_classes: int, y: Tensor | None, batch_size: int | None,
    schedule: schedules.Schedule | str, steps: int, cfg_scale: float,
    cfg_interval: tuple[float, float],
) -> tuple[schedules.Schedule, int, set[int]]:
    """What both eMIGM samplers check first: (κ schedule, batch size — from ``y`` when given —,
    the guided step indices k, empty without guidance)."""
    if isinstance(schedule, str):
        schedule = schedules.get(schedule)
    if y is not None:
        batch_size = y.shape[0]
    if batch_size is None:
        raise ValueError("give labels y or batch_size")
    if cfg_scale and (y is None or num_classes == 0):
        raise ValueError("classifier-free guidance needs labels y and a class-conditional model")
    guided = set(emigm_guided_steps(*cfg_interval, steps)) if cfg_scale else set()
    return schedule, batch_size, guided


def expected_nfe(steps: int, guided: int) -> int:
    """Network evaluations of a run with every step evaluated: N + (guided steps)."""
    return steps + guided
