"""Exponential moving average of model weights.

    θ̄_n = β θ̄_{n−1} + (1 − β) θ_n,      θ̄_0 = θ_0

computed in place as a lerp, θ̄ ← θ̄ + (1 − β)(θ − θ̄), over all parameters at once.

The shadow holds exactly the model's ``state_dict`` entries: parameters (averaged) and
*persistent* buffers (copied). Non-persistent buffers (``register_buffer(...,
persistent=False)``: cached tables such as sinusoidal frequencies) are not part of a state dict,
so they are neither shadowed nor checkpointed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """EMA of ``model``'s parameters (persistent buffers are copied as they are).

    Args:
        model: the network being trained.
        decay: β in [0, 1]; 0 tracks the weights exactly, 1 freezes the initial ones.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items()
        }
        self._param_names = [k for k, _ in model.named_parameters() if k in self.shadow]
        self._buffer_names = [k for k, _ in model.named_buffers() if k in self.shadow]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        shadow = [self.shadow[k] for k in self._param_names]
        current = [params[k].detach() for k in self._param_names]
        if shadow:
            torch._foreach_lerp_(shadow, current, 1.0 - self.decay)
        buffers = dict(model.named_buffers())
        for k in self._buffer_names:
            self.shadow[k].copy_(buffers[k])
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.shadow)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        missing = sorted(set(self.shadow) - set(state["shadow"]))
        extra = sorted(set(state["shadow"]) - set(self.shadow))
        if missing or extra:
            raise KeyError(
                f"EMA state does not match the model: missing {missing[:5]}, unexpected {extra[:5]}"
            )
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
