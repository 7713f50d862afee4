"""Stage ``experiment.tokenize``: pre-extract the training tokens of a paper experiment.

Streams the dataset at ``data.root`` (its real on-disk format, through the loaders of
:mod:`unmask.data`) through the tokenizer (SD-VQ-F8 from a local diffusers folder, a VQ-VAE, or
pixel tokens) into ``out/tokens/train`` with :func:`unmask.data.preextract.preextract`:
memory-flat, resumable, optional horizontal-flip copies, corrupt files skipped by name and
counted in ``out/metrics/tokenize.json``. Captioned datasets (COCO, CC12M) also store each
caption's text-encoder embedding. Run ``python -m unmask.stages experiment.tokenize``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unmask.data.preextract import preextract
from unmask.runtime import write_timings
from unmask.stages import stage
from unmask.stages.experiment.data import build_dataset, build_tokenizer, caption, timings_path
from unmask.stages.experiment.params import CAPTIONED, ExperimentParams
from unmask.tokenizers.text import build_text_encoder


@stage("experiment.tokenize", params=ExperimentParams)
def run(p: ExperimentParams) -> dict[str, Any]:
    """Pre-extract ``out/tokens/train``; writes and returns ``out/metrics/tokenize.json``."""
    out = Path(p.out)
    ds, count, shape, names = build_dataset(p.data)
    tok = build_tokenizer(p.tokenizer)
    captioned = p.data.dataset in CAPTIONED
    enc = None
    if captioned:
        t = p.text
        assert t is not None  # the schema requires it for captioned datasets
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
        # captioned: the label of an image is its row in the caption-embedding table
        label=(lambda it, row: row) if captioned else (lambda it, row: int(it["label"])),
        condition=(lambda items: enc.encode([caption(i) for i in items])) if enc else None,
        condition_dim=enc.dim if enc else None,
        flip=p.tokenizer.flip,
        batch_size=p.data.batch_size,
        source={"dataset": p.data.dataset, "root": str(p.data.root), "split": p.data.split},
        meta=meta,
        progress=True,
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
    write_timings(timings_path(p, "tokenize"), {"seconds": summary["seconds"],
                                                "images_per_s": summary["images_per_s"]})
    print(
        f"tokenize: {summary['count']} images ({summary['num_skipped']} corrupt skipped"
        f"{', + flipped' if summary['flip'] else ''}) → {summary['path']}"
    )
    return metrics
