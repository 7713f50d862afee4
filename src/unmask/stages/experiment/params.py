"""The params schema of the paper-experiment pipelines ``pipelines/<exp>/params.yaml``.

Read with ``unmask.config.load_params(path, overrides, schema=ExperimentParams)`` like every
pipeline's params: an unknown key, a bad value, an unknown κ schedule or a captioned dataset
without a ``text`` section is one :class:`~unmask.errors.ConfigError` line naming the key.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from unmask import schedules
from unmask.config import ReportConfig, Section, TrackingConfig
from unmask.errors import ConfigError
from unmask.models import ModelConfig
from unmask.paramsfile import describe_error
from unmask.training import TrainConfig

__all__ = ["ExperimentParams", "ExpData", "ExpTokenizer", "ExpText", "ExpSample", "ExpHeldout",
           "ExpEvaluate", "ExpReport", "DATASETS", "CAPTIONED", "DERIVED"]

DATASETS = ("imagenet", "coco", "cc12m", "cifar10")
CAPTIONED = ("coco", "cc12m")  # text-to-image datasets: conditions are caption embeddings
DERIVED = ("vocab_size", "grid", "num_classes")  # model fields taken from the token shard


class ExpData(Section):
    """The dataset on disk: ``root`` in the real layout of ``dataset``; ``image_size`` is the
    ADM center crop (ignored for CIFAR-10: 32×32); ``limit`` caps the images (smoke runs)."""

    dataset: Literal["imagenet", "coco", "cc12m", "cifar10"]
    root: str
    split: Literal["train", "val", "test"] = "train"
    image_size: int = Field(default=256, gt=0)
    limit: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=64, gt=0)


class ExpTokenizer(Section):
    """``sd_vq``: a local diffusers ``VQModel`` folder at ``path`` (SD-VQ-F8, DI); ``vq``: a
    VQ-VAE checkpoint of :mod:`unmask.tokenizers.vq`; ``pixel``: ``levels`` bins per RGB
    channel value at ``size`` (channels interleaved along the row). ``flip`` pre-extracts
    the horizontally flipped images too."""

    kind: Literal["sd_vq", "vq", "pixel"] = "sd_vq"
    path: str | None = None
    subfolder: str | None = None
    levels: int = Field(default=256, ge=2, le=256)
    size: int | None = Field(default=None, gt=0)
    flip: bool = False
    device: str = "cpu"


class ExpText(Section):
    """Text conditions (captioned datasets): ``bow`` = hashed bag of words of ``dim`` (no
    weights; the projection is learned with the model), ``clip`` = open_clip at ``path``."""

    encoder: Literal["bow", "clip"] = "bow"
    dim: int = Field(default=512, ge=2)
    path: str | None = None
    model_name: str = "ViT-L-14"


class ExpSample(Section):
    """Class-conditional sample grid of a trained run (:func:`unmask.sampling.sample_with_info`):
    ``n_per_class`` samples for each of ``classes`` (default the first 10), CFG
    ``logits = (1 + w)·cond − w·uncond`` with w = ``cfg_scale``, decoded by the tokenizer;
    ``temperature`` then nucleus ``top_p`` filter every draw (DI Tab. S7: 1.3 / 0.9 on
    ImageNet; ``top_p: 1.0`` keeps every token). Text runs: ``batch_size`` caps the rows
    sampled at once (default all), batch k seeded ``seed + k``, on ``device`` (``auto``: CUDA
    when present)."""

    method: Literal["euler", "mdm", "maskgit", "first_hitting"] = "euler"
    steps: int = Field(default=64, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    cfg_scale: float = Field(default=0.0, ge=0)
    cfg_schedule: Literal["constant", "linear", "interval"] = "constant"
    classes: list[int] | None = None
    n_per_class: int = Field(default=4, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    device: str = "cpu"
    seed: int = 0


class ExpHeldout(Section):
    """Held-out caption/image pairs of the text pipelines (``sample`` and ``evaluate``): the
    first ``count`` readable items of the dataset at ``root`` (default ``data.root``) and
    ``split`` (COCO: ``val`` = val2014; CC12M has no splits: point ``root`` at held-out shards),
    center-cropped to ``data.image_size``. ``grid.png`` shows the first ``grid`` samples in
    ``columns`` columns."""

    root: str | None = None
    split: Literal["train", "val", "test"] = "val"
    count: int = Field(default=16, gt=0)
    grid: int = Field(default=16, gt=0)
    columns: int = Field(default=4, gt=0)


class ExpEvaluate(Section):
    """Scores of the text pipelines' samples: FID against the held-out images (``fid``; needs
    the FID Inception weights) and CLIP score (only with a local open_clip checkpoint at
    ``clip_path``, architecture ``clip_model``); ``device`` default: CUDA when present."""

    fid: bool = True
    fid_batch_size: int = Field(default=64, gt=0)
    clip_path: str | None = None
    clip_model: str = "ViT-L-14"
    device: str | None = None


class ExpReport(ReportConfig):
    """The pipeline's page (``experiment.report``); an empty ``title`` names the pipeline:
    ``Discrete Interpolants — <dataset> (<name>)``."""

    title: str = ""


class ExperimentParams(Section):
    """``pipelines/<exp>/params.yaml``. ``model`` holds :class:`ModelConfig` fields except
    ``vocab_size`` / ``grid`` / ``num_classes`` (derived from the shard at ``train``);
    ``train`` is a :class:`TrainConfig`; ``schedules`` lists the κ schedules of a schedule
    ablation (DI Table S8: one ``train@<schedule>`` stage each); ``text`` is required for the
    captioned datasets (COCO, CC12M)."""

    name: str = "experiment"
    data: ExpData
    tokenizer: ExpTokenizer = ExpTokenizer()
    text: ExpText | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    schedules: list[str] | None = None
    sample: ExpSample = ExpSample()
    heldout: ExpHeldout = ExpHeldout()
    evaluate: ExpEvaluate = ExpEvaluate()
    out: str = "out"
    tracking: TrackingConfig = TrackingConfig()
    report: ExpReport = ExpReport()

    @field_validator("model")
    @classmethod
    def _model_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        # the full ModelConfig needs the shard's vocabulary and grid (train time), but a typo
        # or a bad value should fail when the params are read, before tokenize runs for hours
        fields = list(ModelConfig.model_fields)
        for key in v:
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
                hint = (f" (did you mean 'model.{close[0]}'?)" if close
                        else f" (valid keys: {', '.join(sorted(set(fields) - set(DERIVED)))})")
                raise ValueError(f"'{key}': unknown key{hint}")
        if "modalities" in v:  # their lengths must add up to the shard's: checked at train
            return v
        try:  # the values now, on a stand-in shape (the real one is the shard's)
            ModelConfig(**{"vocab_size": 2, "grid": (2, 2), "num_classes": 1, **v})
        except ValidationError as e:
            key, msg = describe_error(e.errors()[0], ModelConfig)
            msg = msg.removeprefix(f"{key}: ").removeprefix(f"{key} ")
            raise ValueError(f"'{key}': {msg}" if key else msg) from None
        return v

    @field_validator("schedules")
    @classmethod
    def _schedule_names(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            if name not in schedules.NAMES:
                raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(schedules.NAMES)}")
        return v

    @model_validator(mode="after")
    def _captioned_needs_text(self) -> ExperimentParams:
        if self.data.dataset in CAPTIONED and self.text is None:
            raise ValueError(f"dataset {self.data.dataset} is captioned: set the text section")
        return self

    def model_cfg(self, vocab_size: int, grid: Sequence[int], num_classes: int) -> ModelConfig:
        """The denoiser's :class:`ModelConfig`: ``model`` plus the shard's vocabulary, token grid
        and number of classes (an explicit value of those must agree)."""
        derived = {"vocab_size": vocab_size, "grid": tuple(grid), "num_classes": num_classes}
        clash = {k for k in derived if k in self.model and self.model[k] != derived[k]}
        if clash:
            raise ConfigError(f"model.{sorted(clash)[0]} is derived from the data: leave it out")
        try:
            return ModelConfig(**{**self.model, **derived})
        except ValidationError as e:
            raise ConfigError(f"model: {describe_error(e.errors()[0], ModelConfig)[1]}") from None
