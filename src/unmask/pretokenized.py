"""What the pipelines over pre-extracted image tokens share — the joint image + mask stages
(``joint.*``, :mod:`unmask.joint.stages`, DI §3.4) and the video stages (``video.*``,
:mod:`unmask.video.stages`, DI Table 5): their params sections, the image tokenizer (fitted or
loaded by ``tokenize``), model save / load and the end of ``tokenize``; the body of
``train`` is :mod:`unmask.pretokenized_train`, the end of ``evaluate``
:mod:`unmask.pretokenized_evaluate` (so ``tokenize`` depends on neither). Running, params
loading and tracking checks are the stage framework's (``python -m unmask.stages joint.train``
from the pipeline folder).

The stages read and write :data:`TOKENS`, :data:`MODELS`, :data:`SAMPLES`, :data:`REPORT`,
:data:`METRICS` (the ``outs`` of ``pipelines/<exp>/dvc.yaml``) and :data:`RUNS` relative to
the working directory (the pipeline folder).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationError, field_validator

from unmask import schedules
from unmask.config import ReportConfig, Section, TrackingConfig
from unmask.errors import ConfigError
from unmask.models import ModelConfig, Transformer
from unmask.runtime import git_commit
from unmask.tokenizers.pixel import PixelTokenizer
from unmask.tokenizers.sd_vq import SDVQTokenizer
from unmask.tokenizers.vq import VQConfig, VQTokenizer, evaluate_vq, train_vq
from unmask.tracking import make_tracker
from unmask.training.config import TrainConfig

__all__ = [
    "TokenizerSection",
    "TrackingSection",
    "SamplerSection",
    "FIDSection",
    "ReportSection",
    "StageParams",
    "check_model",
    "fit_tokenizer",
    "load_tokenizer",
    "save_model",
    "load_model",
    "write_json",
    "start_run",
    "finish_tokenize",
    "load_tokens",
    "load_trained",
    "TOKENS",
    "RUNS",
    "MODELS",
    "SAMPLES",
    "REPORT",
    "METRICS",
    "TIMINGS",
]

TOKENS, RUNS, MODELS, SAMPLES = Path("tokens"), Path("runs"), Path("models"), Path("samples")
REPORT, METRICS = Path("report"), Path("metrics.json")
#: Wall-clock records (seconds, throughput): no stage declares them, so DVC-hashed outputs
#: (tokens/meta.json, models/train.json, metrics.json) stay a pure function of params/code/data.
TIMINGS = RUNS / "timings"

_VQ_KEYS = tuple(f.name for f in dataclasses.fields(VQConfig) if f.name != "in_channels")
_SAMPLERS = Literal["euler", "mdm", "maskgit", "first_hitting"]


class TokenizerSection(Section):
    """The image tokenizer.

    * ``vq``: a small VQ-VAE (:mod:`unmask.tokenizers.vq`) trained by the tokenize stage on the
      training images with the :class:`~unmask.tokenizers.vq.VQConfig` fields in ``vq``;
    * ``sd_vq``: a diffusers ``VQModel`` (SD-VQ-F8 in DI) from the local folder ``path``
      (``subfolder`` inside it), loaded offline;
    * ``pixel``: ``levels`` intensity bins per pixel (:mod:`unmask.tokenizers.pixel`).
    """

    kind: Literal["vq", "sd_vq", "pixel"] = "vq"
    path: str | None = None
    subfolder: str | None = None
    levels: int = Field(default=8, ge=2, le=256)
    vq: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(default=256, gt=0)

    @field_validator("vq")
    @classmethod
    def _vq_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        # VQConfig is a dataclass (its defaults are the VQ-VAE's): check its keys here so a
        # typo fails at load time, not after the data are read
        unknown = sorted(set(v) - set(_VQ_KEYS))
        if unknown:
            raise ValueError(f"{unknown[0]!r}: unknown VQ-VAE key; valid: {', '.join(_VQ_KEYS)}")
        return v


class TrackingSection(TrackingConfig):
    """MLflow (:class:`unmask.config.TrackingConfig`); ``root`` is relative to the pipeline
    folder."""

    experiment: str = "unmask"
    root: str = "../../mlruns"


class SamplerSection(Section):
    """The sampler both pipelines share (:func:`unmask.sampling.sample`): ``method`` with
    ``steps`` steps on the κ ``schedule``, the token ``temperature`` and MaskGIT's
    ``choice_temperature`` (the scale of the annealed Gumbel noise added to the confidences)."""

    method: _SAMPLERS = "maskgit"
    steps: int = Field(default=16, gt=0)
    schedule: str = "cosine"
    temperature: float = Field(default=1.0, gt=0)
    choice_temperature: float = Field(default=4.5, ge=0)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        if v not in schedules.NAMES:
            raise ValueError(f"unknown schedule {v!r}; valid: {', '.join(schedules.NAMES)}")
        return v


class FIDSection(Section):
    """FID against the real test images (``fid: false`` reports it unavailable)."""

    fid: bool = True
    fid_batch_size: int = Field(default=50, gt=0)


class ReportSection(ReportConfig):
    """The HTML report (``report/index.html``)."""

    title: str = "unmask"


class StageParams(Section):
    """A pipeline's params.yaml, one section per top-level key; a pipeline narrows ``data``,
    ``sample``, ``evaluate``, ``tracking`` and ``report`` to its own sections. ``model`` holds
    :class:`~unmask.models.ModelConfig` keys without the shape (``vocab_size``, ``seq_len``,
    ``grid``, ``frames``, ``modalities``), which the train stage derives from the tokens."""

    data: Section = Section()
    tokenizer: TokenizerSection = TokenizerSection()
    model: dict[str, Any] = Field(default_factory=lambda: {"preset": "tiny"})
    train: TrainConfig = TrainConfig()
    sample: SamplerSection = SamplerSection()
    evaluate: FIDSection = FIDSection()
    tracking: TrackingSection = TrackingSection()
    report: ReportSection = ReportSection()

    @field_validator("model")
    @classmethod
    def _model_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        # the values are validated when the shape is known (train); the keys can be checked now
        unknown = sorted(set(v) - set(ModelConfig.model_fields))
        if unknown:
            raise ValueError(f"{unknown[0]!r}: unknown model config key; valid: "
                             f"{', '.join(sorted(ModelConfig.model_fields))}")
        return v


def check_model(model: dict[str, Any], build: Callable[[dict[str, Any]], ModelConfig]
                ) -> dict[str, Any]:
    """Validate the values of a ``model`` section now, through ``build`` (the family's
    ``model_config`` on a stand-in token shape): the real shape comes from the tokens, but a
    bad value should fail when params are read, not after ``tokenize``. A problem is a
    ``ValueError`` ``"'key': message"`` (the loader shows it as ``model.key: message``)."""
    try:
        build(model)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ValueError(f"'{loc}': {msg}" if loc else msg) from None
    return model


def _gray_or_rgb(images: np.ndarray) -> int:
    return 3 if images.ndim == 4 else 1


def fit_tokenizer(section: TokenizerSection, train_images: np.ndarray, out_dir: Path,
                  progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Build the tokenizer of ``section`` (training the VQ-VAE on ``train_images`` for ``vq``
    and saving it to ``out_dir/vq.pt``); returns it and its description for ``meta.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if section.kind == "vq":
        cfg = VQConfig.from_dict({"in_channels": _gray_or_rgb(train_images), **section.vq})
        model = train_vq(train_images, cfg, progress=progress)
        tok = VQTokenizer(model)
        tok.save(out_dir / "vq.pt")
        n = min(len(train_images), 1000)
        stats = evaluate_vq(model, train_images[:n])
        return tok, {"kind": "vq", "file": "vq.pt", "identity": tok.identity,
                     "recon_psnr_train": stats["psnr"], "codebook_perplexity": stats["perplexity"]}
    tok = load_tokenizer({"kind": section.kind, "path": section.path,
                          "subfolder": section.subfolder, "levels": section.levels,
                          "channels": _gray_or_rgb(train_images)}, out_dir)
    return tok, {"kind": section.kind, "path": section.path, "subfolder": section.subfolder,
                 "levels": section.levels, "channels": _gray_or_rgb(train_images),
                 "identity": tok.identity}


def load_tokenizer(meta: dict[str, Any], tokens_dir: Path) -> Any:
    """The tokenizer described by ``meta`` (see :func:`fit_tokenizer`)."""
    kind = meta["kind"]
    if kind == "vq":
        return VQTokenizer.load(tokens_dir / meta["file"])
    if kind == "sd_vq":
        if not meta.get("path"):
            raise ConfigError("tokenizer.path: the sd_vq tokenizer needs the local folder of "
                             "a diffusers VQModel (SD-VQ-F8)")
        return SDVQTokenizer.from_pretrained(meta["path"], subfolder=meta.get("subfolder"))
    return PixelTokenizer(levels=meta["levels"], channels=meta.get("channels", 1))


def save_model(model: Transformer, weights: dict[str, torch.Tensor] | None, path: Path,
               extra: dict[str, Any] | None = None) -> Path:
    """Save a model's config and (EMA) weights (written to a temporary file, then renamed, so
    a reader never sees a half-written file); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model_config": model.cfg.model_dump(mode="json"),
                "state_dict": weights if weights is not None else model.state_dict(),
                **(extra or {})}, tmp)
    tmp.replace(path)
    return path


def load_model(path: Path) -> tuple[Transformer, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model` (eval mode, CPU)."""
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found: run the train stage first")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = Transformer(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    return path


def start_run(p: Any, stage: str, task_tag: dict[str, str]) -> Any:
    """The MLflow run of ``stage`` in ``p.tracking.experiment`` with the params ``p``, tagged
    ``{**task_tag, stage, git_commit}`` (a no-op tracker when tracking is disabled)."""
    tags = {**task_tag, "stage": stage, "git_commit": git_commit()}
    return make_tracker(p.tracking).start_run(p.tracking.experiment, stage,
                                              params=p.model_dump(mode="json"), tags=tags)


def finish_tokenize(p: Any, task_tag: dict[str, str], meta: dict[str, Any],
                    **arrays: np.ndarray) -> None:
    """The end of a tokenize stage: ``arrays`` to ``TOKENS/tokens.npz``, ``meta`` to
    ``TOKENS/meta.json``, and the tokenizer's float statistics (``meta["tokenizer"]``) to the
    ``tokenize`` MLflow run."""
    TOKENS.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(TOKENS / "tokens.npz", **arrays)
    write_json(TOKENS / "meta.json", meta)
    with start_run(p, "tokenize", task_tag) as tr:
        tr.log_metrics({k: v for k, v in meta["tokenizer"].items() if isinstance(v, float)},
                       step=0)


def load_tokens(*keys: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    """``TOKENS/meta.json`` and the arrays ``keys`` of ``TOKENS/tokens.npz``."""
    meta = json.loads((TOKENS / "meta.json").read_text())
    with np.load(TOKENS / "tokens.npz") as z:
        return meta, [z[k] for k in keys]


def load_trained() -> tuple[Transformer, dict[str, Any], Any, dict[str, Any]]:
    """What the evaluate stage starts from: the trained model (eval mode), the tokens' meta
    it was trained on, their tokenizer, and the train stage's summary."""
    model, state = load_model(MODELS / "model.pt")
    meta = state["meta"]
    tok = load_tokenizer(meta["tokenizer"], TOKENS)
    return model, meta, tok, json.loads((MODELS / "train.json").read_text())
