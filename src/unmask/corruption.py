"""Forward corruption: time sampling and masking (the "probability path" of DI §3.1, eq. 1).

Time convention: t = 0 is all [MASK], t = 1 is data; a token is clean at t with probability κ_t.
The mask token id is V (clean ids are 0..V−1).

* :func:`sample_time` draws t ~ U[t_min, t_max] (DI §4.1 uses [1e-3, 1 − 1e-3]). eMIGM's time
  truncation (its t ∈ [t_min, 1], t = mask time) is our t ∈ [0, 1 − t_min]: see
  :func:`emigm_time_range`.
* :func:`mask_independent` masks each token independently with probability 1 − κ_t (DI eq. 1).
* :func:`mask_exact_count` masks exactly ⌈L (1 − κ_t)⌉ tokens chosen uniformly (MaskGIT).
* :func:`keep_clean` draws the positions of the "C coupling" (DI Table 1): a fixed ratio of
  positions is always given clean and is neither masked nor scored.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from unmask.schedules import DEFAULT_T_MAX, DEFAULT_T_MIN, Schedule

__all__ = [
    "DEFAULT_T_MIN",
    "DEFAULT_T_MAX",
    "sample_time",
    "emigm_time_range",
    "mask_independent",
    "mask_exact_count",
    "keep_clean",
    "corrupt",
]

Masking = Literal["independent", "maskgit"]


def sample_time(
    batch_size: int,
    *,
    t_min: float = DEFAULT_T_MIN,
    t_max: float = DEFAULT_T_MAX,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """t ~ U[t_min, t_max], shape (B,).

    ``stratified=True`` draws one point in each of B equal strata of [t_min, t_max] (in a
    random order): the same marginal U[t_min, t_max], lower variance of batch means
    (the "low-discrepancy sampler" of MDLM / VDM).
    """
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    u = torch.rand(batch_size, generator=generator, device=device)
    if stratified:
        offsets = torch.randperm(batch_size, generator=generator, device=device)
        u = (offsets + u) / batch_size
    return t_min + (t_max - t_min) * u


def emigm_time_range(t_min: float, t_max: float = 1.0) -> tuple[float, float]:
    """Map eMIGM's truncated time interval [t_min, t_max] (t = masking time; eMIGM eq. 7 and
    §4 "Time Truncation") to this package's convention (t = clean time): [1 − t_max, 1 − t_min]."""
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    return 1.0 - t_max, 1.0 - t_min


def _per_row(v: Tensor | float, x: Tensor) -> Tensor:
    """κ broadcastable to ``x``: a scalar, one value per row (B,), or — with a per-position
    schedule such as :class:`unmask.joint.ModalitySchedules` — one per position ((B, L), or
    shaped like ``x``)."""
    v = torch.as_tensor(v, dtype=torch.float32, device=x.device)
    if v.dim() >= 2 and v.numel() == x.numel():
        return v.reshape(x.shape)
    return v.reshape(-1, *([1] * (x.dim() - 1))) if v.dim() else v


def mask_independent(
    x0: Tensor,
    kappa_t: Tensor | float,
    mask_id: int,
    *,
    generator: torch.Generator | None = None,
    keep: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Mask each token independently with probability 1 − κ_t (κ_t per row, shape (B,), or
    per position, shape (B, L) or like ``x0``: per-modality schedules).

    Returns ``(x_t, masked)`` with ``masked`` a bool tensor shaped like ``x0``. Positions in
    ``keep`` (bool, like x0) are never masked.
    """
    u = torch.rand(x0.shape, generator=generator, device=x0.device)
    masked = u >= _per_row(kappa_t, x0)
    if keep is not None:
        masked &= ~keep
    return torch.where(masked, torch.full_like(x0, mask_id), x0), masked


def mask_exact_count(
    x0: Tensor,
    kappa_t: Tensor | float,
    mask_id: int,
    *,
    generator: torch.Generator | None = None,
    keep: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """MaskGIT masking: exactly ⌈n (1 − κ_t)⌉ tokens per row, uniformly at random, where n is
    the number of maskable positions (L, or L minus the ``keep`` positions)."""
    if isinstance(kappa_t, Tensor) and kappa_t.dim() >= 2 and kappa_t.numel() != x0.shape[0]:
        raise ValueError(
            f"maskgit masking needs one κ per row; a per-position κ of shape "
            f"{tuple(kappa_t.shape)} is supported by independent masking only"
        )
    b = x0.shape[0]
    flat = x0.reshape(b, -1)
    keep_f = keep.reshape(b, -1) if keep is not None else torch.zeros_like(flat, dtype=torch.bool)
    n = (~keep_f).sum(-1)
    k = _per_row(kappa_t, flat).reshape(-1).expand(b)
    count = torch.ceil(n * (1.0 - k) - 1e-6).clamp(min=0).long()
    count = torch.minimum(count, n)
    # Random ranks among maskable positions (kept ones sort last): mask the `count` smallest.
    scores = torch.rand(flat.shape, generator=generator, device=x0.device)
    scores = scores.masked_fill(keep_f, 2.0)
    ranks = scores.argsort(-1).argsort(-1)
    masked = (ranks < count[:, None]).reshape(x0.shape)
    return torch.where(masked, torch.full_like(x0, mask_id), x0), masked


def keep_clean(
    shape: tuple[int, ...],
    ratio: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Positions given clean by the conditional ("C") coupling of DI Table 1: ⌊ratio · L⌋
    uniformly chosen positions per row. Returns a bool tensor of ``shape`` (B, ...)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"keep ratio must be in [0, 1], got {ratio}")
    b, length = shape[0], math.prod(shape[1:])
    n_keep = int(math.floor(ratio * length))
    scores = torch.rand((b, length), generator=generator, device=device)
    ranks = scores.argsort(-1).argsort(-1)
    return (ranks < n_keep).reshape(shape)


def corrupt(
    x0: Tensor,
    t: Tensor,
    schedule: Schedule,
    mask_id: int,
    *,
    masking: Masking = "independent",
    keep: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample x_t ~ p_t(· | x_1 = x0) at per-row times ``t`` (B,). Returns ``(x_t, masked)``."""
    kappa = schedule.kappa(t.to(torch.float32))
    if masking == "independent":
        return mask_independent(x0, kappa, mask_id, generator=generator, keep=keep)
    if masking == "maskgit":
        return mask_exact_count(x0, kappa, mask_id, generator=generator, keep=keep)
    raise ValueError(f"unknown masking {masking!r}; valid: independent, maskgit")
