"""Stage ``tokenize``: images → token shards with the configured tokenizer.

Reads ``data/prepared/{split}.npz`` and writes one shard per split to ``data/tokens/{split}/``
(:class:`~unmask.data.shards.ShardWriter`: chunked, memory-flat, atomic), whose manifest records
the tokenizer identity/hash and the prepared file's hash.
"""

from __future__ import annotations

import json

import numpy as np
from tqdm.auto import tqdm

from unmask.config import Params
from unmask.data.shards import ShardWriter
from unmask.stages import PATHS, main

CHUNK = 4096


def run(params: Params) -> dict:
    tok = params.tokenizer.build()
    prepared = json.loads((PATHS.prepared / "manifest.json").read_text())
    out = {}
    for split, info in prepared["splits"].items():
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
            meta={
                "num_classes": len(prepared["class_names"]),
                "class_names": prepared["class_names"],
                "image_shape": info["image_shape"],
            },
        )
        with writer:
            chunks = range(writer.written, len(labels), CHUNK)
            for i in tqdm(chunks, desc=f"tokenize {split}", leave=False):
                writer.write(tok.encode(images[i : i + CHUNK]), labels[i : i + CHUNK])
        out[split] = str(writer.path)
    print(f"tokenize: {tok.identity} → {PATHS.tokens} ({', '.join(out)})")
    return out


if __name__ == "__main__":
    main("tokenize", run=run)
