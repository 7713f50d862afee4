"""The params schema of the joint image–mask pipelines (``pipelines/seg-default``,
``pipelines/cityscapes``): :class:`JointParams`, shared by the ``joint.*`` stages
(:mod:`unmask.joint.stages`), and the model config completed with a :class:`JointLayout`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from unmask import pretokenized as tp
from unmask.config import Section
from unmask.joint.layout import JointLayout
from unmask.joint.schedules import JointTrainConfig
from unmask.models.config import ModelConfig

__all__ = ["JointParams", "DataSection", "SampleSection", "TASK_TAG", "layout_of",
           "model_config"]

#: the MLflow tag of every joint run
TASK_TAG = {"unmask.task": "joint_seg"}


class DataSection(Section):
    """``seg_fmnist``: Fashion-MNIST images (28×28) with foreground × class masks pooled to
    ``mask_size``; ``cityscapes``: ``root`` in the official layout, images resized to
    ``image_size``, 8-category masks to ``mask_size`` (DI: 256×512 and 32×64)."""

    kind: Literal["seg_fmnist", "cityscapes"] = "seg_fmnist"
    root: str | None = None
    max_train: int | None = Field(default=None, gt=0)
    max_test: int | None = Field(default=None, gt=0)
    mask_size: tuple[int, int] = (7, 7)
    image_size: tuple[int, int] | None = None
    threshold: int = Field(default=16, ge=0, le=255)
    test_split: str = "test"

    @model_validator(mode="after")
    def _root(self) -> DataSection:
        if self.kind == "cityscapes" and self.root is None:
            raise ValueError("'root': set it to the Cityscapes folder (leftImg8bit/, gtFine/)")
        return self


class SampleSection(tp.SamplerSection):
    """The shared sampler for joint samples and mask → image; ``seg_*`` for image → mask;
    nucleus ``top_p`` filters every draw of all three tasks (DI Tab. S7: 0.9; 1.0 keeps every
    token); ``num_joint`` unconditional samples, ``num_eval`` test pairs each way."""

    top_p: float = Field(default=1.0, gt=0, le=1)
    seg_method: Literal["euler", "mdm", "maskgit", "first_hitting"] = "maskgit"
    seg_steps: int = Field(default=8, gt=0)
    seg_temperature: float = Field(default=1.0, gt=0)
    num_joint: int = Field(default=32, gt=0)
    num_eval: int = Field(default=200, gt=0)
    batch_size: int = Field(default=100, gt=0)
    seed: int = 0


class JointParams(tp.StageParams):
    """``pipelines/seg-default/params.yaml`` and ``pipelines/cityscapes/params.yaml``."""

    data: DataSection = DataSection()
    train: JointTrainConfig = JointTrainConfig()
    sample: SampleSection = SampleSection()
    tracking: tp.TrackingSection = tp.TrackingSection(experiment="joint-seg")
    report: tp.ReportSection = tp.ReportSection(
        title="Joint image + segmentation-mask model")

    @field_validator("model")
    @classmethod
    def _model_values(cls, v: dict[str, Any]) -> dict[str, Any]:
        return tp.check_model(v, lambda m: model_config(m, _PROBE))


def layout_of(meta: dict[str, Any]) -> JointLayout:
    """The token layout stored by ``joint.tokenize`` (``tokens/meta.json``)."""
    return JointLayout(tuple(meta["image_shape"]), meta["image_vocab"], tuple(meta["mask_shape"]),
                       meta["num_classes"])


def model_config(model: dict[str, Any], layout: JointLayout) -> ModelConfig:
    """The ``model`` section completed with the shape of ``layout`` (one sequence of image
    then mask tokens, their modalities and id ranges)."""
    m = {**model, "vocab_size": layout.vocab_size, "seq_len": layout.seq_len,
         "modalities": layout.modalities(), "num_classes": 0}
    m.pop("grid", None)
    return ModelConfig(**m)


#: a stand-in shape to check the ``model`` section against when params are read
_PROBE = JointLayout((1, 1), 2, (1, 1), 2)
