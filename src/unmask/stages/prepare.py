"""Stage ``prepare``: draw the train / val / test subsets of the dataset.

Writes ``data/prepared/{train,val,test}.npz`` (``images`` uint8 [N, H, W], ``labels`` int64 [N])
and ``manifest.json`` (sizes, class counts, seed, sha256 of the source files and of each npz).
``train`` and ``val`` are disjoint random subsets of the dataset's training split, ``test`` a
random subset of its test split, all drawn with ``data.seed``.
"""

from __future__ import annotations

import json

import numpy as np

from unmask.config import Params
from unmask.data import fashion_mnist
from unmask.data.shards import atomic_dir, file_sha256
from unmask.stages import stage
from unmask.stages.common import PATHS


def subsets(params: Params) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three subsets as ``{split: (images, labels)}``."""
    d = params.data
    rng = np.random.default_rng(d.seed)
    x_tr, y_tr = fashion_mnist.load("train", d.root)
    x_te, y_te = fashion_mnist.load("test", d.root)
    perm = rng.permutation(len(x_tr))
    pick = {
        "train": (x_tr, y_tr, perm[: d.n_train]),
        "val": (x_tr, y_tr, perm[d.n_train : d.n_train + d.n_val]),
        "test": (x_te, y_te, rng.permutation(len(x_te))[: d.n_test]),
    }
    return {k: (x[np.sort(i)], y[np.sort(i)].astype(np.int64)) for k, (x, y, i) in pick.items()}


@stage("prepare", params=Params)
def run(params: Params) -> dict:
    d = params.data
    manifest: dict = {
        "dataset": d.dataset,
        "seed": d.seed,
        "class_names": list(fashion_mnist.CLASS_NAMES),
        "source_sha256": {s: fashion_mnist.source_hash(s, d.root) for s in fashion_mnist.SPLITS},
        "splits": {},
    }
    with atomic_dir(PATHS.prepared) as tmp:
        for split, (images, labels) in subsets(params).items():
            path = tmp / f"{split}.npz"
            np.savez(path, images=images, labels=labels)
            manifest["splits"][split] = {
                "count": len(labels),
                "image_shape": list(images.shape[1:]),
                "class_counts": np.bincount(labels, minlength=10).tolist(),
                "sha256": file_sha256(path),
            }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    sizes = ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
    print(f"prepare: {sizes} → {PATHS.prepared}")
    return manifest

