"""Per-modality masking schedules for training a joint model (issue 7: "optional
per-modality schedules").

With one schedule every token of ``[image | mask]`` is masked with probability 1 − κ_t. With a
schedule κ_m per modality m, a sequence still draws ONE time t ~ U[t_min, t_max], and a token at
a position of modality m is masked independently with probability 1 − κ_m(t):

    p_t(x_t^i | x_1^i) = κ_{m(i)}(t) δ_{x_1^i}(x_t^i) + (1 − κ_{m(i)}(t)) δ_{[M]}(x_t^i).

This is a product of independent per-token masking processes, each with its own schedule, so the
continuous-time NELBO (MDLM eq. 10, DI eq. 4) becomes a sum over tokens of each token's own
weight: w_i(t) = κ̇_{m(i)}(t) / (1 − κ_{m(i)}(t)) for the ``elbo`` weighting (``constant``:
w = 1 as before). :class:`ModalitySchedules` exposes ``kappa`` / ``dkappa`` / ``elbo_weight``
mapping t (B,) to (B, L), which :func:`unmask.corruption.mask_independent`,
:func:`unmask.losses.masked_cross_entropy` and the training loop (``train(..., schedule=)``)
accept in place of a per-row schedule (independent masking only: MaskGIT's exact count per row
is not defined for per-position κ).

Sampling uses ONE schedule for the whole sequence (``sample.schedule``): the samplers of
:mod:`unmask.sampling` take a single κ. A model trained with per-modality schedules has seen
every (κ_image, κ_mask) pair along the training curve t ↦ (κ_image(t), κ_mask(t)) only; the
conditional tasks (image → mask, mask → image) hold one modality clean, which is outside that
curve unless the given modality's κ reaches 1 — as with a single schedule, the model relies on
the denoiser generalising to those states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import Tensor

from unmask import schedules
from unmask.models.config import Modality
from unmask.schedules import Schedule
from unmask.training import TrainConfig

__all__ = ["ModalitySchedules", "JointTrainConfig", "train_schedule"]


@dataclass(frozen=True)
class ModalitySchedules:
    """One κ per contiguous segment of the sequence: ``segments`` = ((name, length, schedule),
    ...) in sequence order. ``kappa(t)``, ``dkappa(t)`` and ``elbo_weight(t)`` map t (B,) to
    (B, L), position i taking its segment's schedule."""

    segments: tuple[tuple[str, int, Schedule], ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("ModalitySchedules needs at least one segment")
        for name, length, _ in self.segments:
            if length < 1:
                raise ValueError(f"segment {name!r} has length {length}; must be positive")

    @classmethod
    def from_modalities(
        cls, modalities: tuple[Modality, ...], by_name: Mapping[str, Schedule]
    ) -> ModalitySchedules:
        """Segments of ``modalities`` (e.g. :meth:`JointLayout.modalities`) with the schedule
        ``by_name[modality.name]`` each; a missing name is an error naming it."""
        missing = [m.name for m in modalities if m.name not in by_name]
        if missing:
            raise ValueError(
                f"no schedule for modality {missing[0]!r}; given: {', '.join(sorted(by_name))}"
            )
        return cls(tuple((m.name, m.length, by_name[m.name]) for m in modalities))

    @property
    def length(self) -> int:
        return sum(n for _, n, _ in self.segments)

    @property
    def name(self) -> str:
        return "+".join(f"{m}:{s.name}" for m, _, s in self.segments)

    def _cat(self, fn: str, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        parts = [getattr(s, fn)(t)[..., None].expand(*t.shape, n) for _, n, s in self.segments]
        return torch.cat(parts, -1)

    def kappa(self, t: Tensor) -> Tensor:
        """κ_{m(i)}(t) per position: (B,) → (B, L)."""
        return self._cat("kappa", t)

    def dkappa(self, t: Tensor) -> Tensor:
        """κ̇_{m(i)}(t) per position: (B,) → (B, L)."""
        return self._cat("dkappa", t)

    def elbo_weight(self, t: Tensor) -> Tensor:
        """κ̇_{m(i)}(t) / (1 − κ_{m(i)}(t)) per position, each modality's own ELBO weight."""
        return self._cat("elbo_weight", t)

    def inverse(self, k: Tensor) -> Tensor:
        raise NotImplementedError(
            "per-modality schedules have no single inverse: sampling "
            "uses one schedule for the whole sequence"
        )


class JointTrainConfig(TrainConfig):
    """:class:`~unmask.training.TrainConfig` plus ``schedules``: an optional κ schedule name
    per modality (``image``, ``mask``), e.g. ``{image: linear, mask: cosine}``; a modality left
    out uses ``schedule`` (with ``schedule_kwargs``). Per-modality schedules need
    ``masking: independent``."""

    schedules: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_schedules(self) -> JointTrainConfig:
        for key, name in self.schedules.items():
            if key not in ("image", "mask"):
                raise ValueError(f"'schedules.{key}': unknown modality; valid: image, mask")
            try:
                schedules.get(name)
            except ValueError as e:
                raise ValueError(f"'schedules.{key}': {e}") from None
        if self.schedules and self.masking != "independent":
            raise ValueError(
                "'schedules': per-modality schedules need masking 'independent', "
                f"got {self.masking!r}"
            )
        return self


def train_schedule(cfg: TrainConfig, modalities: tuple[Modality, ...]) -> Any:
    """The schedule the training loop should use for ``cfg``: None (the loop's own
    ``cfg.schedule``) unless ``cfg.schedules`` gives some modality a different schedule, else a
    :class:`ModalitySchedules` over ``modalities``."""
    per = getattr(cfg, "schedules", None) or {}
    names = {m.name: per.get(m.name, cfg.schedule) for m in modalities}
    if all(n == cfg.schedule for n in names.values()):
        return None
    base = schedules.get(cfg.schedule, **cfg.schedule_kwargs)
    return ModalitySchedules.from_modalities(
        modalities, {m: base if n == cfg.schedule else schedules.get(n) for m, n in names.items()}
    )
