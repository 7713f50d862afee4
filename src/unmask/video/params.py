"""The params schema of the video pipelines (``pipelines/{video-default,faceforensics,dmlab}``):
:class:`VideoParams`, shared by the ``video.*`` stages (:mod:`unmask.video.stages`), and the
model config completed with the tokens' shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from unmask import pretokenized as tp
from unmask.config import Section
from unmask.models.config import ModelConfig

__all__ = ["VideoParams", "DataSection", "SampleSection", "EvaluateSection", "TASK_TAG",
           "model_config"]

#: the MLflow tag of every video run
TASK_TAG = {"unmask.task": "video"}


class DataSection(Section):
    """Clips of ``frames`` frames.

    * ``moving_fmnist``: ``num_train`` / ``num_test`` videos of ``num_items`` garments
      bouncing on a ``size``² canvas (train / test Fashion-MNIST items, seeds 0 / 1);
    * ``faceforensics``: ``root`` (FaceForensics++ layout), ``compression``, ``frame_stride``,
      frames center-cropped to ``size``; the last ``test_fraction`` of the videos is the test
      split; at most ``max_clips_per_video`` clips each;
    * ``dmlab``: ``root`` with TECO ``train/`` and ``test/`` npz episodes.

    ``resize`` (optional) area-resizes every frame to resize × resize after loading.
    """

    kind: Literal["moving_fmnist", "faceforensics", "dmlab"] = "moving_fmnist"
    root: str | None = None
    frames: int = Field(default=16, gt=0)
    size: int = Field(default=64, gt=0)
    resize: int | None = Field(default=None, gt=0)
    num_train: int | None = Field(default=None, gt=0)
    num_test: int | None = Field(default=None, gt=0)
    num_items: int = Field(default=2, ge=1)
    compression: str = "c23"
    frame_stride: int = Field(default=1, gt=0)
    max_clips_per_video: int | None = Field(default=None, gt=0)
    test_fraction: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _root(self) -> DataSection:
        if self.kind != "moving_fmnist" and self.root is None:
            raise ValueError(f"'root': set it to the {self.kind} dataset folder")
        return self


class SampleSection(tp.SamplerSection):
    """``num_uncond`` unconditional clips and ``num_cond`` predictions from the first
    ``context_frames`` frames of test clips; GIF / MP4 at ``fps``."""

    num_uncond: int = Field(default=16, gt=0)
    num_cond: int = Field(default=16, gt=0)
    context_frames: int = Field(default=4, gt=0)
    batch_size: int = Field(default=16, gt=0)
    fps: float = Field(default=4.0, gt=0)
    seed: int = 0


class EvaluateSection(tp.FIDSection):
    """Per-frame FID, and FVD with the I3D weights at ``i3d_path`` (``fvd: false`` skips it)."""

    fvd: bool = True
    i3d_path: str | None = None


class VideoParams(tp.StageParams):
    """``pipelines/{video-default,faceforensics,dmlab}/params.yaml``."""

    data: DataSection = DataSection()
    sample: SampleSection = SampleSection()
    evaluate: EvaluateSection = EvaluateSection()
    tracking: tp.TrackingSection = tp.TrackingSection(experiment="video")
    report: tp.ReportSection = tp.ReportSection(title="Video model")

    @field_validator("model")
    @classmethod
    def _model_values(cls, v: dict[str, Any]) -> dict[str, Any]:
        return tp.check_model(v, lambda m: model_config(m, _PROBE))


def model_config(model: dict[str, Any], meta: dict[str, Any]) -> ModelConfig:
    """The ``model`` section completed with the tokens' shape (``meta``: vocab_size, grid,
    frames); space + time positions unless ``model.pos`` says otherwise."""
    m = {"pos": "spacetime", **model, "vocab_size": meta["vocab_size"],
         "grid": tuple(meta["grid"]), "frames": meta["frames"], "num_classes": 0}
    m.pop("seq_len", None)
    return ModelConfig(**m)


#: a stand-in shape to check the ``model`` section against when params are read
_PROBE = {"vocab_size": 2, "grid": (1, 1), "frames": 2}
