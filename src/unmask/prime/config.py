"""Typed, validated parameters of the MDM-Prime pipelines (``pipelines/*-prime``,
``pipelines/text-default``, ``pipelines/owt``): one ``params.yaml`` per pipeline, read by
:func:`unmask.config.load_params` with ``schema=PrimeParams`` (the runner of
``python -m unmask.stages prime.<stage>`` does that).

Sections: ``data`` (what ``prime.prepare`` reads and how it tokenizes), ``model`` (the
token-level trunk; vocab_size / seq_len / grid / num_classes are derived from the prepared data),
``prime`` (the ℓ values trained side by side), ``train`` (:class:`~unmask.training.TrainConfig`),
``evaluate`` (ELBO), ``sample`` (sampler, ISR), ``tracking`` (MLflow), ``report``.
An unknown or mistyped key is a one-line :class:`~unmask.errors.ConfigError` naming it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from unmask.config import ReportConfig, Section, TrackingConfig
from unmask.prime.model import PrimeConfig
from unmask.training.config import TrainConfig

__all__ = ["PrimeParams", "DataSection", "PrimeSection", "EvaluateSection", "SampleSection"]


class DataSection(Section):
    """What ``prepare`` reads.

    * ``kind: text`` — the embedded Debian corpus (:class:`~unmask.data.text_corpus.TextCorpus`,
      ``source`` python-doc or fortunes), GPT-2 BPE, MDLM wrapped blocks of ``block_size``.
    * ``kind: owt`` — OpenWebText at ``root`` (:class:`~unmask.data.owt.OpenWebText`), same
      tokenization; MDLM's split: the last ``valid_docs`` documents are valid (100 000, as
      MDM-Prime App. A.4.3 following MDLM; lower it for a smaller corpus).
    * ``kind: pixels`` — ``dataset`` fashion_mnist (Debian package), cifar10 (python pickles at
      ``root``) or imagenet32 (the downsampled-ImageNet ``*_npz`` batches at ``root``), each
      pixel value one token of ``levels`` intensities (C = levels), channels interleaved.

    ``compact_vocab`` (text) relabels the GPT-2 ids that occur in the corpus (train ∪ valid) to
    0..C−1 in increasing GPT-2 order: a bijection on the data, so likelihoods keep their meaning,
    and a C-way head ~2× smaller on CPU. ``max_train`` / ``max_valid`` cap the sequences.
    """

    kind: Literal["text", "owt", "pixels"] = "text"
    source: Literal["python-doc", "fortunes"] = "python-doc"
    root: str | None = None
    block_size: int = Field(default=128, ge=3)
    valid_fraction: float = Field(default=0.05, gt=0, lt=1)
    valid_docs: int = Field(default=100_000, gt=0)
    compact_vocab: bool = False
    dataset: Literal["fashion_mnist", "cifar10", "imagenet32"] = "fashion_mnist"
    levels: int = Field(default=256, ge=2, le=256)
    size: int | None = Field(default=None, gt=0)
    max_train: int | None = Field(default=None, gt=0)
    max_valid: int | None = Field(default=None, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _root_given(self) -> DataSection:
        """OpenWebText, CIFAR-10 and ImageNet-32 are read from ``root`` (no embedded copy)."""
        if self.root is None and self.kind == "owt":
            raise ValueError("data.root must point at OpenWebText for data.kind = owt")
        if self.root is None and self.kind == "pixels" and self.dataset != "fashion_mnist":
            raise ValueError(f"data.root must point at {self.dataset} for data.dataset = "
                             f"{self.dataset}")
        return self


class PrimeSection(Section):
    """ℓ values trained and compared (1 = plain MDM); ``carry_over`` (MDM-Prime §3.2 eq. 6,
    Tab. A2): ``false`` trains and scores the unfiltered joint
    (:attr:`~unmask.prime.model.PrimeConfig.carry_over`)."""

    ells: list[int] = Field(default_factory=lambda: [1, 2])
    carry_over: bool = True

    @field_validator("ells")
    @classmethod
    def _ells(cls, v: list[int]) -> list[int]:
        if not v or any(e < 1 or e > 32 for e in v) or len(set(v)) != len(v):
            raise ValueError(f"must be distinct integers in 1..32, got {v}")
        return v


class EvaluateSection(Section):
    """ELBO on the valid split: ``n_sequences`` sequences × ``num_samples`` MC times."""

    n_sequences: int = Field(default=256, gt=0)
    num_samples: int = Field(default=8, gt=0)
    batch_size: int = Field(default=64, gt=0)
    seed: int = 0


class SampleSection(Section):
    """Unconditional samples (texts / images) and the idle-step ratio."""

    method: Literal["mdm", "euler", "first_hitting"] = "mdm"
    steps: int = Field(default=128, gt=0)
    num_samples: int = Field(default=16, gt=0)
    batch_size: int = Field(default=16, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    fp64_gumbel: bool = True
    seed: int = 0


class TrackingSection(TrackingConfig):
    """MLflow: ``$MLFLOW_TRACKING_URI`` or a sqlite store under ``root`` (relative to the
    pipeline folder)."""

    experiment: str = Field(default="prime", min_length=1)
    root: str = "../../mlruns"


class ReportSection(ReportConfig):
    """The ℓ-comparison report (``prime.report``)."""

    title: str = "MDM-Prime: partial masking, ℓ side by side"


class PrimeParams(Section):
    """Everything an MDM-Prime ``params.yaml`` holds. ``model`` stays a mapping because its
    shape fields come from the prepared data; its other keys are validated against
    :class:`~unmask.prime.model.PrimeConfig` (the shared :class:`~unmask.models.ModelConfig`)
    here, so a typo fails before any stage runs."""

    data: DataSection = DataSection()
    model: dict[str, Any] = Field(default_factory=lambda: {"preset": "prime-text-tiny"})
    prime: PrimeSection = PrimeSection()
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateSection = EvaluateSection()
    sample: SampleSection = SampleSection()
    tracking: TrackingSection = TrackingSection()
    report: ReportSection = ReportSection()

    @model_validator(mode="after")
    def _model_fields(self) -> PrimeParams:
        derived = {"vocab_size", "seq_len", "grid", "num_classes"} & set(self.model)
        if derived:
            raise ValueError(f"model.{sorted(derived)[0]} is derived from the prepared data "
                             "(leave it out)")
        try:  # validate the trunk fields now (shape fields are filled in by `train`)
            PrimeConfig(model={"vocab_size": 256, "seq_len": 8, **self.model}, ell=1)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"][1:])
            raise ValueError(f"model.{loc}: {err['msg']}") from None
        return self

    def flat(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
