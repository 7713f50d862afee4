"""Adapters from a conditional network to the package's denoiser interface.

A denoiser is ``denoiser(x_t, t) -> logits``; samplers never see labels. For classifier-free
guidance the sampler asks for ``cond_and_uncond(x_t, t)`` when present and combines
ℓ = ℓ_u + w (ℓ_c − ℓ_u) itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConditionedDenoiser"]


class ConditionedDenoiser:
    """Fix the labels of ``model(x, t, y)`` to get a denoiser ``(x_t, t) -> logits``.

    Args:
        model: a network called as ``model(x_t, t, y)`` (e.g. :class:`Transformer`).
        y: (B,) labels, a scalar label for every row, or None (unconditional: the null class).
        null_label: the label of the unconditional branch; default ``model.null_class``.
            (eMIGM-style models that use a different null id pass it here.)

    Gradients are not disabled here: wrap calls in ``torch.no_grad()`` where wanted.
    """

    def __init__(self, model: nn.Module, y: Tensor | int | None = None,
                 null_label: int | None = None) -> None:
        self.model = model
        self.y = torch.as_tensor(y, dtype=torch.long) if y is not None else None
        if null_label is None:
            null_label = getattr(model, "null_class", None)
        self.null_label = null_label
        self.time_conditioned: bool = getattr(model, "time_conditioned", True)

    def _labels(self, y: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
        if y is None:
            if self.null_label is None:
                return None
            return torch.full((batch,), self.null_label, dtype=torch.long, device=device)
        y = y.to(device)
        return y.expand(batch) if y.dim() == 0 or y.shape[0] == 1 else y

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.model(x_t, t, self._labels(self.y, x_t.shape[0], x_t.device))

    def select_rows(self, idx: Tensor) -> ConditionedDenoiser:
        """This denoiser on batch rows ``idx`` (per-row labels indexed; the network is used
        as it is): lets samplers evaluate only the rows whose state changed."""
        y = self.y
        if y is not None and y.dim() > 0 and y.shape[0] > 1:
            y = y.to(idx.device)[idx]
        return ConditionedDenoiser(self.model, y, self.null_label)

    def cond_and_uncond(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(conditional, unconditional) logits from ONE forward over the doubled batch."""
        if self.y is None or self.null_label is None:
            raise ValueError("classifier-free guidance needs labels y and a null label")
        b = x_t.shape[0]
        y = self._labels(self.y, b, x_t.device)
        null = torch.full_like(y, self.null_label)
        t = torch.as_tensor(t, device=x_t.device)
        t2 = torch.cat([t, t]) if t.dim() else t
        logits = self.model(torch.cat([x_t, x_t]), t2, torch.cat([y, null]))
        return logits[:b], logits[b:]
