"""The one typed, validated configuration of a pipeline, read from ``params.yaml``.

``load_params(path, overrides)`` parses the YAML, applies overrides and validates everything
into a :class:`Params` object (the generic file/override/error machinery is
:mod:`unmask.paramsfile`). Sections come from the modules that own them
(:class:`~unmask.models.config.ModelConfig`, :class:`~unmask.training.config.TrainConfig`)
plus the pipeline's own (``data``, ``tokenizer``, ``sample``, ``evaluate``, ``tracking``,
``report``). Every model forbids unknown keys, and every failure becomes one
:class:`ConfigError` line naming the file and the dotted key::

    params.yaml: unknown key 'train.lr_rate' (did you mean 'train.lr'?)
    params.yaml: sample.temperature must be > 0 (got -1)

The model section holds the architecture only: ``vocab_size``, ``grid`` and ``num_classes``
are derived from the tokenizer and the dataset (an explicit value must agree with them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from unmask import paramsfile, schedules
from unmask.data import fashion_mnist
from unmask.errors import ConfigError
from unmask.models.config import ModelConfig
from unmask.paramsfile import parse_overrides, read_params_file, validation_error
from unmask.sampling import METHODS
from unmask.training.config import TrainConfig

__all__ = [
    "ConfigError",
    "Section",
    "DataConfig",
    "TokenizerConfig",
    "VQSection",
    "SampleConfig",
    "EvaluateConfig",
    "TrackingConfig",
    "ReportConfig",
    "Params",
    "load_params",
    "read_params_file",
    "validation_error",
    "parse_overrides",
]

DATASETS = {
    "fashion_mnist": {
        "train": 60_000,
        "test": 10_000,
        "classes": 10,
        "size": (28, 28),
        "class_names": fashion_mnist.CLASS_NAMES,
    }
}


class Section(BaseModel):
    """Base of the pipeline's own sections: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_schedule(name: str | None) -> str | None:
    if name is not None and name not in schedules.NAMES:
        raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(schedules.NAMES)}")
    return name


class DataConfig(Section):
    """Which dataset, and the sizes of the train / val / test subsets drawn by ``prepare``.

    ``train`` and ``val`` are disjoint random subsets of the dataset's training split, ``test``
    a random subset of its test split (all drawn with ``seed``).
    """

    dataset: Literal["fashion_mnist"] = "fashion_mnist"
    root: str = str(fashion_mnist.DEFAULT_ROOT)
    n_train: int = Field(default=59_000, gt=0)
    n_val: int = Field(default=1_000, gt=0)
    n_test: int = Field(default=1_000, gt=0)
    seed: int = 0

    @property
    def class_names(self) -> list[str]:
        return list(DATASETS[self.dataset]["class_names"])

    @model_validator(mode="after")
    def _fits(self) -> DataConfig:
        sizes = DATASETS[self.dataset]
        if self.n_train + self.n_val > sizes["train"]:
            raise ValueError(
                f"n_train + n_val = {self.n_train + self.n_val} exceeds the "
                f"{sizes['train']} training images of {self.dataset}"
            )
        if self.n_test > sizes["test"]:
            raise ValueError(f"n_test = {self.n_test} exceeds the {sizes['test']} test images")
        return self


class VQSection(Section):
    """The learned VQ-VAE tokenizer (:mod:`unmask.tokenizers.vq`): architecture and training.

    Trained by the ``tokenizer`` stage on the first ``n_train`` prepared training images (all
    when None) and saved to ``tokenizer.path``; the fields are those of
    :class:`~unmask.tokenizers.vq.VQConfig`. The token grid is (H, W) / 2^num_down.
    """

    codebook_size: int = Field(default=256, ge=2, le=65536)
    hidden: int = Field(default=32, gt=0)
    latent_dim: int = Field(default=16, gt=0)
    num_down: int = Field(default=2, ge=0, le=5)
    num_res: int = Field(default=1, ge=0)
    beta: float = Field(default=0.25, ge=0)
    ema_decay: float = Field(default=0.99, gt=0, lt=1)
    dead_threshold: float = Field(default=0.5, ge=0)
    steps: int = Field(default=800, gt=0)
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=2e-3, gt=0)
    seed: int = 0
    n_train: int | None = Field(default=10_000, gt=0)

    def vq_config(self, in_channels: int = 1) -> dict[str, Any]:
        """Keyword arguments of :class:`~unmask.tokenizers.vq.VQConfig`."""
        return {"in_channels": in_channels, **self.model_dump(exclude={"n_train"})}


class TokenizerConfig(Section):
    """The image tokenizer of the pipeline.

    ``kind: pixel``: the per-pixel quantiser (:class:`~unmask.tokenizers.PixelTokenizer`,
    ``levels`` intensity bins at ``size``). ``kind: vq``: the small VQ-VAE of the ``vq``
    section, trained by the ``train-tokenizer`` stage and loaded from ``path``
    (:func:`unmask.tokenizers.build_tokenizer` builds either). ``flip``: the
    ``tokenize`` stage also pre-extracts the tokens of horizontally flipped training images
    (DI / MAR), and training draws from originals and flips alike.
    """

    kind: Literal["pixel", "vq"] = "pixel"
    levels: int = Field(default=8, ge=2, le=256)
    size: tuple[int, int] | int | None = None
    vq: VQSection = VQSection()
    path: str = "models/tokenizer.pt"
    flip: bool = False

    @field_validator("size")
    @classmethod
    def _positive(cls, v: tuple[int, int] | int | None) -> tuple[int, int] | int | None:
        if v is not None and min((v, v) if isinstance(v, int) else v) < 1:
            raise ValueError(f"size must be positive (got {v})")
        return v

    @property
    def vocab_size(self) -> int:
        """V: the pixel levels or the VQ codebook size."""
        return self.levels if self.kind == "pixel" else self.vq.codebook_size

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """Token grid (h, w) for images of ``image_size`` (grayscale)."""
        if self.kind == "vq":
            f = 2**self.vq.num_down
            return image_size[0] // f, image_size[1] // f
        if self.size is None:
            return image_size
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)


class SampleConfig(Section):
    """Sampling of the class grid (arguments of :func:`unmask.sampling.sample`).

    ``schedule`` None uses the training schedule (``train.schedule``). ``chain_frames`` is the
    number of snapshots in the unmasking-chain strip.
    """

    method: str = "mdm"
    steps: int = Field(default=32, gt=0)
    schedule: str | None = None
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    cfg_scale: float = Field(default=0.0, ge=0)
    cfg_schedule: Literal["constant", "linear", "interval"] = "constant"
    cfg_interval: tuple[float, float] = (0.0, 1.0)
    choice_temperature: float = Field(default=4.5, ge=0)
    n_per_class: int = Field(default=8, gt=0)
    seed: int = 0
    chain_frames: int = Field(default=10, ge=2)
    checkpoint: Literal["ema", "raw"] = "ema"

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown sampling method {v!r}; valid: {', '.join(METHODS)}")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        return _check_schedule(v)

    @field_validator("cfg_interval")
    @classmethod
    def _interval(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] <= v[1] <= 1.0:
            raise ValueError(f"must satisfy 0 <= lo <= hi <= 1 (got {list(v)})")
        return v


class EvaluateConfig(Section):
    """Held-out NELBO (Monte-Carlo, ``num_samples`` stratified times per sequence), sample
    statistics and FID. ``n_sequences`` caps the held-out sequences scored; ``schedule`` None
    uses the training schedule.

    FID (standard Inception, :mod:`unmask.metrics.heldout` — the same rules for the pipeline and
    every ablation trial): the first ``fid_num_samples`` generated images against the first
    ``fid_reference`` held-out images of ``split`` (the real images of ``data/prepared``,
    features cached by the manifest hash); ``fid_std``, its standard error from
    ``fid_std_subsets`` random halves of the generated features (0: off), seeded by ``seed``;
    KID over subsets of min(``kid_subset_size``, N/2) images; ``fid_recon`` also scores the
    held-out images reconstructed through the tokenizer (``fid_recon``: the tokenizer's FID
    floor; ``fid_vs_recon``: samples against the reconstructions); ``fid`` false skips FID
    (missing Inception weights make it *unavailable*, never replaced)."""

    split: Literal["val", "test"] = "test"
    n_sequences: int = Field(default=1000, gt=0)
    num_samples: int = Field(default=4, gt=0)
    batch_size: int = Field(default=250, gt=0)
    schedule: str | None = None
    seed: int = 0
    fid: bool = True
    fid_num_samples: int = Field(default=1000, gt=1)
    fid_reference: int = Field(default=1000, gt=1)
    fid_recon: bool = True
    fid_batch_size: int = Field(default=50, gt=0)
    fid_std_subsets: int = Field(default=100, ge=0)
    kid_subset_size: int = Field(default=500, gt=1)

    @field_validator("fid_std_subsets")
    @classmethod
    def _std_subsets(cls, v: int) -> int:
        if v == 1:
            raise ValueError("0 (no fid_std) or >= 2 subsets (a std needs two)")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        return _check_schedule(v)


class TrackingConfig(Section):
    """MLflow: experiment name; ``enabled: false`` logs nothing (a NullTracker).
    The store is ``$MLFLOW_TRACKING_URI`` or a local sqlite store under ``root``."""

    enabled: bool = True
    experiment: str = Field(default="default", min_length=1)
    root: str = "mlruns"


class ReportConfig(Section):
    """The HTML report."""

    title: str = "unmask — default pipeline"


class Params(BaseModel):
    """Everything ``params.yaml`` holds; each top-level key is one section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = SampleConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    tracking: TrackingConfig = TrackingConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="before")
    @classmethod
    def _derive_model_shape(cls, data: Any) -> Any:
        """Fill model.vocab_size / grid / num_classes from the tokenizer and dataset."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        try:
            tok = TokenizerConfig(**(data.get("tokenizer") or {}))
            ds = DataConfig(**(data.get("data") or {})).dataset
        except (ValidationError, TypeError):
            return data  # reported by the section's own validation
        derived = {
            "vocab_size": tok.vocab_size,
            "grid": tok.grid(DATASETS[ds]["size"]),
            "num_classes": DATASETS[ds]["classes"],
        }
        model = dict(data.get("model") or {})
        for key, value in derived.items():
            given = model.get(key)
            if given is not None and _normal(given) != _normal(value):
                raise ValueError(
                    f"model.{key} = {given} disagrees with the value {_normal(value)} derived "
                    "from the tokenizer/data sections (leave it out)"
                )
            model[key] = value
        data["model"] = model
        return data

    def flat(self) -> dict[str, Any]:
        """JSON-able nested dict (for logging)."""
        return self.model_dump(mode="json")


def _normal(v: Any) -> Any:
    return list(v) if isinstance(v, list | tuple) else v


def load_params(
    path: str | Path = "params.yaml",
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    *,
    schema: type[BaseModel] | None = None,
) -> Any:
    """Read, override and validate a params file with ``schema`` (default: the default
    pipeline's :class:`Params`; every pipeline's params class goes through here). Raises
    :class:`ConfigError` (one line naming the file or override, and the key)."""
    return paramsfile.load(path, overrides, schema or Params)
