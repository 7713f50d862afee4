"""Typed, validated parameters of the eMIGM pipelines (``pipelines/emigm-*/params.yaml``).

Every section forbids unknown keys; ``unmask.config.load_params(path, overrides,
schema=EMIGMParams)`` (what ``python -m unmask.stages emigm.<stage>`` runs) turns any failure into
one :class:`~unmask.config.ConfigError` line naming the file and the dotted key. Sections:

* ``data``: Fashion-MNIST (default pipeline) or pre-extracted token / latent arrays (``kind:
  arrays``, the ImageNet-256 pipeline: ``train_path`` is an ``.npz`` with ``tokens`` or
  ``latents`` and ``labels``, e.g. from the KL-16 pre-extraction).
* ``vq`` / ``kl``: the tokenizers trained here (:class:`~unmask.tokenizers.vq.VQConfig`,
  :class:`~unmask.emigm.kl_ae.KLAEConfig`).
* ``objective``: eMIGM's unified loss in eMIGM's own terms (mask strategy, weighting, t_min in
  mask time) — turned into a :class:`~unmask.training.TrainConfig` by
  :func:`unmask.emigm.objective.emigm_train_config`.
* ``discrete`` / ``continuous``: ``model`` (:class:`~unmask.emigm.config.MAEConfig` fields; the
  data-derived ones — vocabulary, grid, classes, token dim — are filled in) and ``train``
  (TrainConfig fields other than the objective's).
* ``sample`` (guidance in the package's convention: ``cfg_scale`` = w, see
  :class:`SampleParams`), ``evaluate``, ``tracking`` (the shared
  :class:`~unmask.config.TrackingConfig`), ``report`` (the page's title).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from unmask.config import ReportConfig, Section, TrackingConfig
from unmask.emigm.config import MAEConfig
from unmask.emigm.kl_ae import KLAEConfig
from unmask.emigm.objective import EMIGM_SCHEDULES, emigm_train_config
from unmask.tokenizers.vq import VQConfig
from unmask.training import TrainConfig

__all__ = ["EMIGMParams", "ObjectiveParams", "ModelTrainParams", "SampleParams"]

_OBJECTIVE_KEYS = {"schedule", "schedule_kwargs", "weighting", "t_min", "t_max"}


class DataParams(Section):
    """Where the images / tokens come from."""

    kind: Literal["fashion_mnist", "arrays"] = "fashion_mnist"
    root: str = "/usr/share/datasets/fashion-mnist"
    n_train: int = Field(default=10000, gt=0)
    n_test: int = Field(default=1000, gt=0)
    seed: int = 0
    # kind=arrays: a token shard directory or .npz with tokens | latents (N, C, h, w) + labels
    train_path: str | None = None
    # kind=arrays: FID reference — an .npz of uint8 images (first array) or a cached key
    reference: str | None = None
    # kind=arrays, continuous: the KL decoder (MAR's kl16.ckpt or a diffusers folder)
    tokenizer: str | None = None
    tokenizer_format: Literal["mar", "diffusers"] = "mar"
    num_classes: int = Field(default=10, ge=0)

    @model_validator(mode="after")
    def _check(self) -> DataParams:
        if self.kind == "arrays" and not self.train_path:
            raise ValueError("data.kind 'arrays' needs data.train_path")
        return self


class ObjectiveParams(Section):
    """eMIGM's unified objective (mask-time convention; see :mod:`unmask.emigm.objective`)."""

    schedule: str = "exp"
    weighting: Literal["constant", "elbo"] = "constant"
    t_min: float = Field(default=0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> ObjectiveParams:
        if self.schedule not in EMIGM_SCHEDULES:
            raise ValueError(f"objective.schedule must be one of {sorted(EMIGM_SCHEDULES)}")
        return self


class ModelTrainParams(Section):
    """One model: its architecture and its optimisation (objective fields live in ``objective``)."""

    enabled: bool = True
    model: dict[str, Any] = Field(default_factory=lambda: {"preset": "emigm-tiny"})
    train: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ModelTrainParams:
        bad = sorted(_OBJECTIVE_KEYS & set(self.train))
        if bad:
            raise ValueError(f"train.{bad[0]} belongs to the 'objective' section (eMIGM terms)")
        TrainConfig(**self.train)  # unknown / invalid keys fail here
        return self

    def train_config(self, objective: ObjectiveParams) -> TrainConfig:
        return emigm_train_config(schedule=objective.schedule, weighting=objective.weighting,
                                  t_min=objective.t_min, **self.train)


class SampleParams(Section):
    """eMIGM's MDM sampler with CFG (eMIGM §5.3, App. C).

    Guidance in the package's convention: logits (discrete) or the head's ε (continuous) are
    (1 + w)·cond − w·uncond, ``cfg_scale`` = w, 0 = no guidance. eMIGM's ``--cfg`` s is MAR's
    scale, ε_u + s(ε_c − ε_u) (eMIGM code, models/diffloss.py), so **w = s − 1** (eMIGM's
    ImageNet runs: s = 4 → w = 3). ``cfg_schedule``: ``constant`` w, or eMIGM/MAR's
    ``linear`` w·r with r the fraction of tokens unmasked after the step. Guidance runs only
    on steps whose end mask time s_{k+1} lies in eMIGM's ``cfg_interval`` (a, b].
    """

    steps: int = Field(default=16, gt=0)
    cfg_scale: float = Field(default=0.0, ge=0.0)
    cfg_schedule: Literal["constant", "linear"] = "constant"
    cfg_interval: tuple[float, float] = (0.0, 1.0)
    temperature: float = Field(default=1.0, gt=0)
    head_sampler: Literal["dpm-solver++", "ddpm"] | None = None
    head_steps: int | None = Field(default=None, gt=0)
    n_per_class: int = Field(default=8, gt=0)  # sample grid
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _old_cfg_key(cls, data: Any) -> Any:
        # sample.cfg was eMIGM's scale s; say how to convert rather than "unknown key"
        if isinstance(data, dict) and "cfg" in data:
            raise ValueError("key 'cfg' (eMIGM's scale s) is now cfg_scale = s - 1 "
                             "(w = 0: no guidance)")
        return data

    @model_validator(mode="after")
    def _check(self) -> SampleParams:
        a, b = self.cfg_interval
        if not 0.0 <= a <= b <= 1.0:
            raise ValueError(f"sample.cfg_interval must satisfy 0 <= a <= b <= 1, got ({a}, {b})")
        return self


class EvaluateParams(Section):
    n_fid: int = Field(default=500, gt=1)
    batch_size: int = Field(default=250, gt=0)


class TrackingParams(TrackingConfig):
    experiment: str = Field(default="emigm-default", min_length=1)


class ReportParams(ReportConfig):
    title: str = "eMIGM"


class EMIGMParams(Section):
    """The whole params file (see the module docstring)."""

    data: DataParams = Field(default_factory=DataParams)
    vq: dict[str, Any] = Field(default_factory=dict)
    kl: dict[str, Any] = Field(default_factory=dict)
    objective: ObjectiveParams = Field(default_factory=ObjectiveParams)
    discrete: ModelTrainParams = Field(default_factory=ModelTrainParams)
    continuous: ModelTrainParams = Field(default_factory=ModelTrainParams)
    sample: SampleParams = Field(default_factory=SampleParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    tracking: TrackingParams = Field(default_factory=TrackingParams)
    report: ReportParams = Field(default_factory=ReportParams)

    @model_validator(mode="after")
    def _check(self) -> EMIGMParams:
        VQConfig.from_dict(self.vq)
        KLAEConfig.from_dict(self.kl)
        c = self.data.num_classes
        self.discrete_model(vocab_size=2, grid=(2, 2), num_classes=c)
        self.continuous_model(token_dim=2, grid=(2, 2), num_classes=c)
        return self

    def discrete_model(self, **derived: Any) -> MAEConfig:
        """The discrete :class:`MAEConfig` with the data-derived fields filled in."""
        return MAEConfig(**{**self.discrete.model, **derived, "token_dim": None, "head": None})

    def continuous_model(self, **derived: Any) -> MAEConfig:
        model = dict(self.continuous.model)
        model.setdefault("head", {})
        return MAEConfig(**{**model, **derived})
