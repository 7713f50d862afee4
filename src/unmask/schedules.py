"""Masking schedules κ_t.

Convention (shared by the whole package): t = 0 is all [MASK], t = 1 is data, and
κ_t = P(a token is clean at time t), so κ_0 = 0 and κ_1 = 1 (``exp`` is the one exception,
κ_0 = e^{-5}, exactly as eMIGM defines it). The forward (corruption) process keeps each
token of x_1 independently with probability κ_t:

    p_t(x_t^i | x_1^i) = κ_t δ_{x_1^i}(x_t^i) + (1 − κ_t) δ_{[M]}(x_t^i)        (DI eq. 1)

eMIGM writes the mask ratio γ_s with s = 1 − t; the two are related by κ_t = 1 − γ_{1−t}.

Every schedule exposes ``kappa(t)``, its derivative ``dkappa(t)``, the ELBO weight
κ̇_t / (1 − κ_t) and the inverse κ^{-1} (used by the exact first-hitting sampler).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Schedule", "get", "NAMES", "DEFAULT_T_MIN", "DEFAULT_T_MAX"]

# the default training time interval [t_min, t_max] (eMIGM's t_min truncation), kept away from
# the endpoints where κ̇/(1 − κ) diverges; used by unmask.corruption and TrainConfig
DEFAULT_T_MIN = 1e-3
DEFAULT_T_MAX = 1.0 - 1e-3


@dataclass(frozen=True)
class Schedule:
    """A masking schedule κ: [0, 1] → [0, 1], increasing.

    Args:
        name: registry name.
        kappa_fn: t ↦ κ_t.
        dkappa_fn: t ↦ dκ_t/dt.
        inverse_fn: optional closed form of κ^{-1}; bisection is used otherwise.
        params: the keyword arguments the schedule was built with (for logging).
    """

    name: str
    kappa_fn: Callable[[Tensor], Tensor] = field(repr=False)
    dkappa_fn: Callable[[Tensor], Tensor] = field(repr=False)
    inverse_fn: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)
    params: dict = field(default_factory=dict)

    def kappa(self, t: Tensor) -> Tensor:
        """κ_t, the probability that a token is clean at time t."""
        return self.kappa_fn(_as_tensor(t))

    def dkappa(self, t: Tensor) -> Tensor:
        """κ̇_t = dκ_t / dt."""
        return self.dkappa_fn(_as_tensor(t))

    def elbo_weight(self, t: Tensor) -> Tensor:
        """κ̇_t / (1 − κ_t): the continuous-time ELBO weight of the masked CE (MDLM eq. 10;
        w(t) of DI eq. 3 / eq. 10) and the jump rate of a masked token in the reverse process."""
        t = _as_tensor(t)
        return self.dkappa(t) / (1.0 - self.kappa(t)).clamp_min(1e-12)

    def inverse(self, k: Tensor) -> Tensor:
        """κ^{-1}(k): the time t at which κ_t = k (k is clamped into [κ_0, κ_1])."""
        k = _as_tensor(k)
        if self.inverse_fn is not None:
            return self.inverse_fn(k).clamp(0.0, 1.0)
        return _bisect(self.kappa_fn, k)


def _as_tensor(t: Tensor | float) -> Tensor:
    if isinstance(t, Tensor):
        return t if t.is_floating_point() else t.float()
    return torch.as_tensor(t, dtype=torch.float64 if isinstance(t, float) else None)


def _bisect(f: Callable[[Tensor], Tensor], k: Tensor, iters: int = 60) -> Tensor:
    """Inverse of an increasing f on [0, 1] by bisection (60 halvings: below fp64 resolution)."""
    lo = torch.zeros_like(k, dtype=torch.float64)
    hi = torch.ones_like(k, dtype=torch.float64)
    kk = k.to(torch.float64)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = f(mid) < kk
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return (0.5 * (lo + hi)).to(k.dtype if k.is_floating_point() else torch.float32)


_E5 = math.exp(5.0)


def _linear() -> Schedule:
    return Schedule("linear", lambda t: t, lambda t: torch.ones_like(t), lambda k: k)


def _root() -> Schedule:
    # κ = √t; κ̇ = 1/(2√t) is infinite at t = 0 (the clamp keeps it finite for the sampler).
    return Schedule(
        "root", torch.sqrt, lambda t: 0.5 / torch.sqrt(t.clamp_min(1e-12)), lambda k: k * k
    )


def _cosine() -> Schedule:
    # MaskGIT's cosine mask ratio cos(πs/2) with s = 1 − t... written in κ: 1 − cos(πt/2).
    return Schedule(
        "cosine",
        lambda t: 1.0 - torch.cos(0.5 * math.pi * t),
        lambda t: 0.5 * math.pi * torch.sin(0.5 * math.pi * t),
        lambda k: torch.acos((1.0 - k).clamp(-1.0, 1.0)) * 2.0 / math.pi,
    )


def _arccos() -> Schedule:
    return Schedule(
        "arccos",
        lambda t: 1.0 - 2.0 * torch.arccos(t.clamp(-1.0, 1.0)) / math.pi,
        lambda t: 2.0 / (math.pi * torch.sqrt((1.0 - t * t).clamp_min(1e-12))),
        lambda k: torch.cos(0.5 * math.pi * (1.0 - k)),
    )


def _quadratic() -> Schedule:
    return Schedule("quadratic", lambda t: t * t, lambda t: 2.0 * t, lambda k: torch.sqrt(k))


def _cubic(a: float = 0.0, b: float = 0.0) -> Schedule:
    """Cubic Hermite κ with κ_0 = 0, κ_1 = 1, κ̇_0 = a, κ̇_1 = b (DI Table 1)."""

    def kappa(t: Tensor) -> Tensor:
        t2, t3 = t * t, t * t * t
        return -2 * t3 + 3 * t2 + a * (t3 - 2 * t2 + t) + b * (t3 - t2)

    def dkappa(t: Tensor) -> Tensor:
        t2 = t * t
        return -6 * t2 + 6 * t + a * (3 * t2 - 4 * t + 1) + b * (3 * t2 - 2 * t)

    grid = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)
    if bool((dkappa(grid) < -1e-9).any()):
        # κ must be a CDF of the unmasking time: a non-monotone cubic is not a schedule.
        raise ValueError(f"schedule 'cubic': a={a}, b={b} give a non-monotone κ_t")
    return Schedule("cubic", kappa, dkappa, None, {"a": a, "b": b})


def _exp() -> Schedule:
    # eMIGM "exp": γ_s = 1 − e^{−5s}  ⇒  κ_t = 1 − γ_{1−t} = e^{−5(1−t)}.
    return Schedule(
        "exp",
        lambda t: torch.exp(-5.0 * (1.0 - t)),
        lambda t: 5.0 * torch.exp(-5.0 * (1.0 - t)),
        lambda k: 1.0 + torch.log(k.clamp_min(math.exp(-5.0))) / 5.0,
    )


def _logexp() -> Schedule:
    # eMIGM "log-exp": γ_s = log(1 + (e^5 − 1) s) / 5  ⇒  κ_t = 1 − log(1 + (e^5 − 1)(1 − t)) / 5.
    return Schedule(
        "logexp",
        lambda t: 1.0 - torch.log1p((_E5 - 1.0) * (1.0 - t)) / 5.0,
        lambda t: (_E5 - 1.0) / (5.0 * (1.0 + (_E5 - 1.0) * (1.0 - t))),
        lambda k: 1.0 - torch.expm1(5.0 * (1.0 - k)) / (_E5 - 1.0),
    )


_REGISTRY: dict[str, Callable[..., Schedule]] = {
    "linear": _linear,
    "root": _root,
    "cosine": _cosine,
    "arccos": _arccos,
    "quadratic": _quadratic,
    "cubic": _cubic,
    "exp": _exp,
    "logexp": _logexp,
}
NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get(name: str, **kwargs: float) -> Schedule:
    """Return the schedule registered under ``name`` (see ``NAMES``).

    Only ``cubic`` takes keyword arguments (``a``, ``b``: the end-point slopes).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(NAMES)}")
    try:
        sched = _REGISTRY[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"schedule {name!r} got invalid arguments {kwargs}: {e}") from None
    if not sched.params and kwargs:
        sched = Schedule(sched.name, sched.kappa_fn, sched.dkappa_fn, sched.inverse_fn, kwargs)
    return sched
