"""Pieces shared by the joint image–mask and the video pipelines: params sections and loading,
the image tokenizer (fitted or loaded by the tokenize stage), model save / load, MLflow.

Both pipelines run their stages from the pipeline folder (``dvc.yaml``'s ``wdir``), with
``--params FILE`` (default params.yaml) and repeatable ``--set key=value`` overrides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unmask.config import ConfigError, parse_overrides
from unmask.models import ModelConfig, Transformer

__all__ = [
    "Section",
    "TokenizerSection",
    "TrackingSection",
    "load_yaml_params",
    "fit_tokenizer",
    "load_tokenizer",
    "save_model",
    "load_model",
    "make_tracker",
    "fid_result",
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class TrackingSection(Section):
    enabled: bool = True
    experiment: str = "unmask"
    root: str = "../../mlruns"


def load_yaml_params(cls: type[BaseModel], path: str | Path,
                     overrides: list[str] | None = None) -> Any:
    """Read ``path``, apply ``key=value`` overrides and validate with ``cls``; any problem is a
    one-line :class:`~unmask.config.ConfigError` naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")

    def merge(base: dict, extra: dict) -> dict:
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                merge(base[k], v)
            else:
                base[k] = v
        return base

    extra = parse_overrides(overrides)
    try:
        params = cls.model_validate(merge(raw, extra))
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {key}: {err['msg']}") from None
    model = getattr(params, "model", None)
    if isinstance(model, dict):  # validated when the data shape is known; check keys now
        unknown = sorted(set(model) - set(ModelConfig.model_fields))
        if unknown:
            raise ConfigError(f"{path}: model.{unknown[0]}: unknown model config key; valid: "
                              f"{', '.join(sorted(ModelConfig.model_fields))}")
    return params


def _gray_or_rgb(images: np.ndarray) -> int:
    return 3 if images.ndim == 4 else 1


def fit_tokenizer(section: TokenizerSection, train_images: np.ndarray, out_dir: Path,
                  progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Build the tokenizer of ``section`` (training the VQ-VAE on ``train_images`` for ``vq``
    and saving it to ``out_dir/vq.pt``); returns it and its description for ``meta.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if section.kind == "vq":
        from unmask.tokenizers.vq import VQConfig, VQTokenizer, evaluate_vq, train_vq

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
        from unmask.tokenizers.vq import VQTokenizer

        return VQTokenizer.load(tokens_dir / meta["file"])
    if kind == "sd_vq":
        from unmask.tokenizers.sd_vq import SDVQTokenizer

        if not meta.get("path"):
            raise ConfigError("tokenizer.path: the sd_vq tokenizer needs the local folder of "
                              "a diffusers VQModel (SD-VQ-F8)")
        return SDVQTokenizer.from_pretrained(meta["path"], subfolder=meta.get("subfolder"))
    from unmask.tokenizers.pixel import PixelTokenizer

    return PixelTokenizer(levels=meta["levels"], channels=meta.get("channels", 1))


def save_model(model: Transformer, weights: dict[str, torch.Tensor] | None, path: Path,
               extra: dict[str, Any] | None = None) -> Path:
    """Save a model's config and (EMA) weights; returns the path. A ``.sha256`` sidecar lets
    a reader detect truncation."""
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


def make_tracker(section: TrackingSection) -> Any:
    from unmask.tracking import NullTracker, Tracker

    return Tracker(root=section.root) if section.enabled else NullTracker()


def fid_result(samples: np.ndarray, reference: np.ndarray, key: str, *, enabled: bool = True,
               batch_size: int = 50, name: str = "fid") -> Any:
    """FID of ``samples`` against ``reference`` with the standard offline Inception, or an
    *unavailable* result naming why (weights absent, or disabled in params)."""
    from unmask.metrics import MetricResult, compute_fidelity
    from unmask.orchestration.evaluation import fid_available

    if not enabled:
        return MetricResult.unavailable(name, "disabled in params (evaluate.fid: false)")
    ok, reason = fid_available()
    if not ok:
        return MetricResult.unavailable(name, reason, num_samples=len(samples))
    digest = hashlib.sha256(np.ascontiguousarray(reference).tobytes()).hexdigest()[:12]
    res = compute_fidelity(samples, reference, metrics=("fid",), reference_key=f"{key}-{digest}",
                           batch_size=batch_size, verbose=False)["fid"]
    return dataclasses.replace(res, name=name)  # e.g. fid_mask_to_image in MLflow


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    return path
