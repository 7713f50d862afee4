"""Typed, validated training configuration (an unknown key is an error that names it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unmask import schedules
from unmask.schedules import DEFAULT_T_MAX, DEFAULT_T_MIN

__all__ = ["TrainConfig"]


class TrainConfig(BaseModel):
    """Optimisation, objective and bookkeeping of :func:`unmask.training.train`.

    Objective (see :mod:`unmask.losses`): ``schedule`` (+ ``schedule_kwargs``) names κ_t,
    ``weighting`` w(t), ``normalize`` the CE normalisation, t ~ U[t_min, t_max] (``stratified``
    over the batch), ``masking`` independent (DI) or exact-count (MaskGIT), ``keep_ratio`` the
    fraction of positions always given clean (DI's C coupling).

    Optimiser: AdamW(lr, betas, weight_decay on matrices only), linear warm-up over
    ``warmup_steps`` then ``constant`` or ``cosine`` decay to 0 at ``steps``; gradient norm
    clipped to ``grad_clip`` (≤ 0: no clipping); weight EMA with ``ema_decay``.
    """

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=1000, gt=0)
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=3e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = Field(default=100, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: float = 1.0
    ema_decay: float = Field(default=0.9999, ge=0, le=1)
    seed: int = 0
    log_every: int = Field(default=50, gt=0)
    ckpt_every: int = Field(default=1000, gt=0)
    keep_last: int = Field(default=3, gt=0)
    schedule: str = "linear"
    schedule_kwargs: dict[str, float] = Field(default_factory=dict)
    weighting: Literal["constant", "elbo"] = "constant"
    normalize: Literal["tokens", "masked"] = "tokens"
    t_min: float = DEFAULT_T_MIN
    t_max: float = DEFAULT_T_MAX
    stratified: bool = True
    masking: Literal["independent", "maskgit"] = "independent"
    keep_ratio: float = Field(default=0.0, ge=0, lt=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    num_workers: int = Field(default=0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"'betas' must lie in [0, 1), got {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError(
                f"'t_min' / 't_max' must satisfy 0 <= t_min < t_max <= 1, "
                f"got t_min={self.t_min}, t_max={self.t_max}"
            )
        try:
            schedules.get(self.schedule, **self.schedule_kwargs)
        except ValueError as e:
            raise ValueError(f"'schedule': {e}") from None
        return self

    def changed(self, other: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Fields whose value differs from ``other`` (a dumped config): {key: (other, self)}."""
        mine = self.model_dump(mode="json")
        return {k: (other.get(k), v) for k, v in mine.items() if other.get(k) != v}
