"""What the experiment stages share: the dataset and tokenizer of a params file, captions, the
held-out caption/image pairs and where wall-clock values go."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unmask.data import cc12m, cifar10, coco, imagenet
from unmask.errors import ConfigError
from unmask.stages.experiment.params import ExpData, ExperimentParams, ExpTokenizer
from unmask.tokenizers import PixelTokenizer
from unmask.tokenizers.sd_vq import SDVQTokenizer
from unmask.tokenizers.vq import VQTokenizer

__all__ = ["build_dataset", "build_tokenizer", "caption", "heldout_pairs", "timings_path"]


def build_dataset(d: ExpData) -> tuple[Any, int, tuple[int, ...], list[str] | None]:
    """(loader, expected count, image shape, class names or None) of the data section."""
    if d.dataset == "imagenet":
        split = "val" if d.split == "val" else "train"
        ds: Any = imagenet.ImageNet(d.root, split, image_size=d.image_size)
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
        return PixelTokenizer(levels=t.levels, size=t.size, channels=3)
    if t.path is None:
        raise ConfigError(f"tokenizer.path: kind {t.kind} needs a local checkpoint path")
    if t.kind == "vq":
        return VQTokenizer.load(t.path)
    return SDVQTokenizer.from_pretrained(t.path, subfolder=t.subfolder, device=t.device)


def caption(item: Mapping[str, Any]) -> str:
    """The caption a dataset item is conditioned on: COCO's first, CC12M's only."""
    caps = item.get("captions")
    return str(caps[0]) if caps else str(item.get("caption", ""))


def heldout_pairs(p: ExperimentParams) -> tuple[list[str], np.ndarray]:
    """(captions, uint8 images [n, S, S, 3]) of the first ``heldout.count`` readable held-out
    items (corrupt files are skipped by the dataset loader); one clear error if there are none."""
    h = p.heldout
    data = p.data.model_copy(
        update={"root": h.root or p.data.root, "split": h.split, "limit": h.count}
    )
    ds, _, _, _ = build_dataset(data)
    captions, images = [], []
    for item in ds:
        captions.append(caption(item))
        images.append(np.asarray(item["image"], dtype=np.uint8))
        if len(captions) == h.count:
            break
    if not captions:
        raise ConfigError(f"heldout: no readable caption/image pairs at {data.root} ({h.split})")
    return captions, np.stack(images)


def timings_path(p: ExperimentParams, name: str) -> Path:
    """Where a stage's wall-clock values go: ``out/runs/timings/<name>.json`` (git-ignored, no
    DVC output), so the DVC-hashed metrics stay a pure function of params, code and data."""
    return Path(p.out) / "runs" / "timings" / f"{name}.json"
