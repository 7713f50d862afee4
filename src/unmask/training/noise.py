"""Keyed training noise: every random draw of the objective is a pure function of
(seed, step, global sample index[, position]).

Why: with a sequential ``torch.Generator`` the noise a sample gets depends on how many samples
were drawn before it on the same process, so data-parallel training on W workers would see
different t's and masks than one process with the same global batch. Here sample ``i`` of the
global batch at step ``s`` always gets the same t, mask and label dropout, whatever the worker
count, device or resume point, so W-worker DDP reproduces single-process training up to the
floating-point order of the gradient all-reduce.

The generator is a counter-based hash (Wellons' ``lowbias32`` mixer, 32-bit arithmetic done in
int64 with the multiplication split in 16-bit halves, so nothing overflows and the bits are the
same on every device). Uniforms have 24 random bits, like ``torch.rand`` in float32.

Semantics match :mod:`unmask.corruption` / :func:`unmask.losses.diffusion_loss`:

* t ~ U[t_min, t_max], stratified over the *global* batch: sample i falls in stratum π(i) of a
  permutation π keyed by (seed, step), identical on every worker;
* ``independent`` masking: token masked iff u ≥ κ_t; ``maskgit``: exactly ⌈n(1 − κ_t)⌉ masked
  tokens, chosen by keyed random ranks; ``keep_ratio``: ⌊ratio·L⌋ positions kept clean;
* label dropout: label replaced by the null class iff u < ``cond_dropout``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from unmask.schedules import Schedule

__all__ = ["Stream", "keyed_uniform", "ObjectiveNoise", "objective_noise"]

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


class Stream:
    """Independent noise streams (part of the key)."""

    T = 1
    T_PERM = 2
    MASK = 3
    KEEP = 4
    LABEL = 5


def _mul32(a: Tensor | int, c: int) -> Tensor | int:
    """(a · c) mod 2³² for 0 ≤ a, c < 2³² without leaving int64."""
    lo, hi = a & 0xFFFF, a >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _M32


def _mix(x: Tensor | int) -> Tensor | int:
    """lowbias32: a bijective 32-bit integer hash with good avalanche."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _key(seed: int, step: int, stream: int) -> int:
    h = _mix(seed & _M32)
    h = _mix(h ^ ((seed >> 32) & _M32))
    h = _mix(((h + _GOLDEN * (step + 1)) & _M32) ^ ((step >> 32) & _M32))
    return int(_mix(h ^ stream))


def keyed_uniform(seed: int, step: int, index: Tensor, n: int, stream: int) -> Tensor:
    """Uniforms in [0, 1), shape (len(index), n): entry (r, j) depends only on
    (seed, step, stream, index[r], j)."""
    h = _key(seed, step, stream)
    idx = index.to(torch.int64).reshape(-1, 1)
    row = _mix((idx * _GOLDEN + h) & _M32)
    col = torch.arange(n, dtype=torch.int64, device=index.device).reshape(1, -1)
    bits = _mix(row ^ _mix((col + 0x632BE5AB) & _M32))
    return (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))


def _ranks(scores: Tensor) -> Tensor:
    return scores.argsort(-1).argsort(-1)


@dataclass
class ObjectiveNoise:
    """The random inputs of one step's objective for the local rows (b of them)."""

    t: Tensor  # (b,) float32
    masked: Tensor  # (b, L) bool
    keep: Tensor | None  # (b, L) bool or None
    drop_label: Tensor  # (b,) bool


def objective_noise(
    *,
    seed: int,
    step: int,
    index: Tensor,
    global_batch: int,
    length: int,
    schedule: Schedule,
    t_min: float,
    t_max: float,
    stratified: bool,
    masking: str,
    keep_ratio: float,
    cond_dropout: float,
    device: torch.device | str | None = None,
) -> ObjectiveNoise:
    """Draw t, the mask, the kept positions and the label-dropout flags for the rows with
    global batch indices ``index`` (b,) of a global batch of ``global_batch`` rows."""
    index = index.to(device=device, dtype=torch.int64)
    u = keyed_uniform(seed, step, index, 1, Stream.T)[:, 0]
    if stratified:
        every = torch.arange(global_batch, dtype=torch.int64, device=index.device)
        rank = _ranks(keyed_uniform(seed, step, every, 1, Stream.T_PERM)[:, 0])
        u = (rank[index].to(torch.float32) + u) / global_batch
    t = t_min + (t_max - t_min) * u

    keep = None
    if keep_ratio > 0:
        n_keep = int(math.floor(keep_ratio * length))
        keep = _ranks(keyed_uniform(seed, step, index, length, Stream.KEEP)) < n_keep

    kappa = schedule.kappa(t.to(torch.float32))
    kappa = kappa.reshape(-1, 1) if kappa.dim() <= 1 else kappa  # (b, L): per-position κ
    scores = keyed_uniform(seed, step, index, length, Stream.MASK)
    if masking == "independent":
        masked = scores >= kappa
        if keep is not None:
            masked &= ~keep
    elif masking == "maskgit":
        if kappa.shape[1] != 1:
            raise ValueError(
                "maskgit masking needs one κ per row; per-position schedules "
                "need masking 'independent'"
            )
        n = torch.full_like(index, length) if keep is None else (~keep).sum(-1)
        count = torch.ceil(n * (1.0 - kappa[:, 0]) - 1e-6).clamp(min=0).long()
        count = torch.minimum(count, n)
        if keep is not None:
            scores = scores.masked_fill(keep, 2.0)
        masked = _ranks(scores) < count[:, None]
    else:
        raise ValueError(f"unknown masking {masking!r}; valid: independent, maskgit")
    drop = keyed_uniform(seed, step, index, 1, Stream.LABEL)[:, 0] < cond_dropout
    return ObjectiveNoise(t=t, masked=masked, keep=keep, drop_label=drop)
