"""``python -m unmask.stages emigm.prepare``: seeded Fashion-MNIST subsets →
``out/data/{train,test}.npz`` (images uint8, labels)."""

from __future__ import annotations

import numpy as np

from unmask.data import fashion_mnist
from unmask.emigm.layout import OUT
from unmask.emigm.params import EMIGMParams
from unmask.errors import ConfigError
from unmask.stages import stage

__all__ = ["prepare"]


@stage("emigm.prepare", params=EMIGMParams)
def prepare(p: EMIGMParams) -> None:
    """Fashion-MNIST subsets → out/data/{train,test}.npz (images uint8, labels)."""
    d = p.data
    if d.kind != "fashion_mnist":
        raise ConfigError(f"data.kind: stage 'emigm.prepare' needs 'fashion_mnist' (got "
                          f"{d.kind!r}; 'arrays' data skips it)")
    rng = np.random.default_rng(d.seed)
    out = OUT / "data"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", d.n_train), ("test", d.n_test)):
        x, y = fashion_mnist.load(split, d.root)
        idx = np.sort(rng.choice(len(x), size=min(n, len(x)), replace=False))
        np.savez_compressed(out / f"{split}.npz", images=x[idx], labels=y[idx].astype(np.int64))
