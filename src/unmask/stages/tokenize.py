"""Stage ``tokenize``: images → token shards with the configured tokenizer.

Reads ``data/prepared/{split}.npz`` and writes one shard per split to ``data/tokens/{split}/``
(:class:`~unmask.data.shards.ShardWriter`: chunked, memory-flat, atomic, resumable), whose
manifest records the tokenizer identity/hash and the prepared file's hash. The tokenizer is
:func:`unmask.tokenizers.build_tokenizer` (the trained VQ-VAE under ``tokenizer.kind: vq``).

With ``tokenizer.flip`` the training shard also holds the tokens of the horizontally flipped
images (``tokens_flip.npy``; pre-extracted as DI and MAR do, since a learned tokenizer's tokens
of a flipped image are not the flipped tokens).
"""

from __future__ import annotations

import json

import numpy as np
from tqdm.auto import tqdm

from unmask.config import Params
from unmask.data.shards import ShardWriter
from unmask.stages import stage
from unmask.stages.common import PATHS
from unmask.tokenizers import build_tokenizer

CHUNK = 4096


@stage("tokenize", params=Params)
def run(params: Params) -> dict:
    tok = build_tokenizer(params.tokenizer)
    prepared = json.loads((PATHS.prepared / "manifest.json").read_text())
    out = {}
    for split, info in prepared["splits"].items():
        flip = params.tokenizer.flip and split == "train"
        with np.load(PATHS.prepared / f"{split}.npz") as z:
            images, labels = z["images"], z["labels"]
        writer = ShardWriter(
            PATHS.tokens / split,
            count=len(labels),
            shape=tok.token_shape(images.shape[1:]),
            vocab_size=tok.vocab_size,
            tokenizer={"identity": tok.identity, "hash": tok.hash},
            source={"dataset": prepared["dataset"], "split": split, "sha256": info["sha256"]},
            labels=True,
            flip=flip,
            meta={
                "num_classes": len(prepared["class_names"]),
                "class_names": prepared["class_names"],
                "image_shape": info["image_shape"],
            },
        )
        with writer:
            chunks = range(writer.written, len(labels), CHUNK)
            for i in tqdm(chunks, desc=f"tokenize {split}", leave=False):
                x = images[i : i + CHUNK]
                flipped = tok.encode(np.ascontiguousarray(x[:, :, ::-1])) if flip else None
                writer.write(tok.encode(x), labels[i : i + CHUNK], flipped=flipped)
        out[split] = str(writer.path)
    print(f"tokenize: {tok.identity} → {PATHS.tokens} ({', '.join(out)})")
    return out

