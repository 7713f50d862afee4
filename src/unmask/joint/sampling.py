"""The three uses of one joint image–mask model, all through :func:`unmask.sampling.sample`.

* ``joint``: x_0 = all [MASK] → a sample of p(image, mask);
* ``image_to_mask`` (segmentation as unmasking): the image tokens are given in ``x_init`` and
  stay fixed, so the sampler draws from p(mask | image);
* ``mask_to_image``: the mask is given, the sampler draws from p(image | mask).

Because a sampler with an exact denoiser samples p(x_free | x_given) when the given positions
are clean in ``x_init`` (the denoiser's marginals are conditional on every clean position),
conditional generation needs no extra training (tests/joint/test_joint_exactness.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from unmask.joint.layout import JointLayout, Task
from unmask.models.transformer import MASKED_LOGIT
from unmask.sampling import sample

__all__ = ["sample_joint", "restrict_logits"]


def restrict_logits(layout: JointLayout, logits: Tensor) -> Tensor:
    """Set the logits of ids outside each position's modality to :data:`MASKED_LOGIT`
    (for denoisers, such as exact ones, that do not restrict themselves)."""
    pos = torch.arange(layout.seq_len, device=logits.device)[:, None]
    ids = torch.arange(layout.vocab_size, device=logits.device)[None]
    is_img_pos, is_img_id = pos < layout.image_len, ids < layout.image_vocab
    valid = is_img_pos == is_img_id
    return logits.masked_fill(~valid, MASKED_LOGIT)


def sample_joint(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    layout: JointLayout,
    task: Task,
    *,
    batch_size: int | None = None,
    image: Tensor | None = None,
    mask: Tensor | None = None,
    device: torch.device | str | None = None,
    **sample_kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Sample with the joint model for ``task``; returns ``(image ids (B, h_i, w_i),
    mask classes (B, h_m, w_m))`` — the given modality is returned unchanged.

    ``sample_kwargs`` go to :func:`unmask.sampling.sample` (method, steps, schedule,
    temperature, top_p, generator, ...). Sampling uses that one ``schedule`` for the whole sequence,
    also for a model trained with per-modality schedules (:mod:`unmask.joint.schedules`).
    """
    x0 = layout.x_init(task, batch_size=batch_size, image=image, mask=mask)
    if device is not None:
        x0 = x0.to(device)
    x = sample(denoiser, batch_size=x0.shape[0], seq_len=layout.seq_len, mask_id=layout.mask_id,
               x_init=x0, **sample_kwargs)
    return layout.split(x)
