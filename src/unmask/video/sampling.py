"""Unconditional and frame-conditioned video sampling through :func:`unmask.sampling.sample`.

Tokens of a clip are (T, h, w), flattened frame-major: position (t, i, j) ↦ t·h·w + i·w + j.
Frame-conditioned prediction (DI's DMLab evaluation) puts the first k frames' tokens into
``x_init``; the samplers never change a clean position of ``x_init``, so those frames come
back exactly and the rest are drawn from p(frames k.. | frames ..k).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from unmask.sampling import sample

__all__ = ["video_x_init", "sample_video"]


def video_x_init(
    batch_size: int, frames: int, grid: tuple[int, int], mask_id: int,
    context: Tensor | None = None,
) -> Tensor:
    """(B, T·h·w) start state: [MASK] everywhere except the k given ``context`` frames
    (B, k, h, w) at the start of the clip."""
    h, w = grid
    x = torch.full((batch_size, frames, h, w), mask_id, dtype=torch.long)
    if context is not None:
        context = torch.as_tensor(context).long()
        k = context.shape[1] if context.dim() == 4 else -1
        if context.dim() != 4 or context.shape[0] != batch_size or tuple(context.shape[2:]) != (
            h, w
        ) or not 0 < k <= frames:
            raise ValueError(f"context must be (B={batch_size}, k<={frames}, {h}, {w}) frame "
                             f"tokens, got {tuple(context.shape)}")
        if int(context.min()) < 0 or int(context.max()) >= mask_id:
            raise ValueError(f"context tokens must be clean ids in [0, {mask_id})")
        x[:, :k] = context
    return x.reshape(batch_size, -1)


def sample_video(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    *,
    batch_size: int,
    frames: int,
    grid: tuple[int, int],
    mask_id: int,
    context: Tensor | None = None,
    device: torch.device | str | None = None,
    **sample_kwargs: Any,
) -> Tensor:
    """Sample (B, T, h, w) clip tokens; ``context`` (B, k, h, w) fixes the first k frames."""
    x0 = video_x_init(batch_size, frames, grid, mask_id, context)
    if device is not None:
        x0 = x0.to(device)
    x = sample(denoiser, batch_size=batch_size, seq_len=x0.shape[1], mask_id=mask_id,
               x_init=x0, **sample_kwargs)
    return x.reshape(batch_size, frames, *grid)
