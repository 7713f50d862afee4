"""Pre-extraction: stream a dataset through a tokenizer into a token shard.

DI reports 1.3 → 4.2 training it/s from pre-extracting SD-VQ indices instead of encoding every
batch; DI and MAR also pre-extract the horizontally flipped images (a learned tokenizer's tokens
of a flipped image are not the flipped tokens, so flips cannot be applied to token grids later).

:func:`preextract` reads items ``{"key", "image", ...}`` from a loader (any iterable; the loaders
of :mod:`unmask.data` skip corrupt files and record them in ``loader.skipped``), encodes
``batch_size`` images at a time and appends them to a :class:`~unmask.data.shards.ShardWriter`:
memory holds one batch, never the dataset. Corrupt files end up in the manifest's ``skipped``
list (the shard is finalized short, ``count`` = rows written); an interrupted run resumes after
the rows already written (the loader must yield items in a fixed order).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from unmask.data.shards import ShardWriter, TokenShards

__all__ = ["preextract", "hflip_images"]


def hflip_images(images: np.ndarray) -> np.ndarray:
    """Horizontal flip of uint8 images [N, H, W] or [N, H, W, C] (contiguous copy)."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])


def preextract(
    items: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    out: str | Path,
    *,
    count: int,
    image_shape: tuple[int, ...],
    label: Callable[[Mapping[str, Any], int], int] | None = None,
    condition: Callable[[list[Mapping[str, Any]]], np.ndarray | torch.Tensor] | None = None,
    condition_dim: int | None = None,
    flip: bool = False,
    batch_size: int = 64,
    source: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Tokenize the images of ``items`` into the shard ``out`` and return a summary.

    Args:
        items: the dataset (e.g. :class:`~unmask.data.imagenet.ImageNet`); its ``skipped``
            attribute, if any, is read after the iteration (corrupt files, by name).
        tokenizer: ``encode(uint8 images) -> LongTensor [n, h, w]``, ``vocab_size``,
            ``identity``, ``hash``, ``token_shape(image_shape)``.
        count: the number of items expected (the shard is finalized short if fewer arrive).
        image_shape: the shape of one image (all images share it: loaders center-crop).
        label: ``label(item, row) -> int`` stored as the row's label (class id, or the row
            index for text conditions); None stores none.
        condition: ``condition(batch_items) -> float [n, condition_dim]`` stored as the rows'
            ``latents`` (pre-computed text embeddings of the captions).
        flip: also store the tokens of the horizontally flipped images.
        batch_size: images per encode call.
        source, meta: recorded in the manifest.

    Returns:
        ``{"path", "count", "requested_count", "skipped", "num_skipped", "seconds",
        "images_per_s"}``.
    """
    writer = ShardWriter(
        out,
        count=count,
        shape=tokenizer.token_shape(tuple(image_shape)),
        vocab_size=tokenizer.vocab_size,
        tokenizer={"identity": tokenizer.identity, "hash": tokenizer.hash},
        source=source,
        labels=label is not None,
        latent_shape=(condition_dim,) if condition is not None else None,
        meta=meta,
        flip=flip,
    )
    known = {s["path"] for s in writer.skipped}
    done = writer.written
    start = time.perf_counter()
    # A resumed run skips the items already written (the loader re-skips corrupt ones).
    stream = itertools.islice(iter(items), done, None)
    bar = tqdm(
        total=count, initial=done, desc=f"pre-extract {Path(out).name}", disable=not progress
    )
    while writer.remaining:
        batch = list(itertools.islice(stream, min(batch_size, writer.remaining)))
        if not batch:
            break
        images = np.stack([np.asarray(it["image"]) for it in batch])
        if tuple(images.shape[1:]) != tuple(image_shape):
            raise ValueError(
                f"{batch[0].get('key', '?')}: image shape {images.shape[1:]}, expected "
                f"{tuple(image_shape)} (set the loader's image_size)"
            )
        first = writer.written
        labels = (
            np.array([label(it, first + i) for i, it in enumerate(batch)], dtype=np.int64)
            if label is not None
            else None
        )
        latents = None
        if condition is not None:
            latents = np.asarray(condition(batch), dtype=np.float32).reshape(len(batch), -1)
        flipped = tokenizer.encode(hflip_images(images)) if flip else None
        writer.write(tokenizer.encode(images), labels, latents, flipped=flipped)
        bar.update(len(batch))
    bar.close()
    for rec in getattr(items, "skipped", []):
        path = str(getattr(rec, "path", rec))
        if path not in known:
            writer.skip(path, str(getattr(rec, "reason", "")))
    seconds = time.perf_counter() - start
    new_rows = writer.written - done
    path = writer.finalize(allow_short=True)
    shard = TokenShards(path, verify=False)
    return {
        "path": str(path),
        "count": len(shard),
        "requested_count": count,
        "skipped": shard.skipped,
        "num_skipped": len(shard.skipped),
        "flip": shard.has_flip,
        "seconds": round(seconds, 3),
        "images_per_s": round(new_rows / seconds, 2) if seconds > 0 else None,
    }
