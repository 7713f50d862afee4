"""``python -m unmask.stages emigm.tokenize-discrete`` / ``emigm.tokenize-continuous``: train
the branch's tokenizer (VQ-VAE / KL autoencoder) on ``out/data/train.npz`` and encode the
training images → ``out/tokens/``, reconstruction stats → ``out/metrics/tokenizer_<kind>.json``."""

from __future__ import annotations

import numpy as np

from unmask.emigm.kl_ae import train_kl_ae
from unmask.emigm.layout import OUT, Kind, write_json
from unmask.emigm.params import EMIGMParams
from unmask.stages import stage
from unmask.tokenizers.vq import VQTokenizer, evaluate_vq, train_vq

__all__ = ["tokenize", "tokenize_discrete", "tokenize_continuous"]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def tokenize(p: EMIGMParams, kind: Kind) -> None:
    """Train the branch's tokenizer (VQ-VAE / KL-AE) and encode the training images."""
    train_set = np.load(OUT / "data" / "train.npz")
    test = np.load(OUT / "data" / "test.npz")
    out = OUT / "tokens"
    out.mkdir(parents=True, exist_ok=True)
    if kind == "discrete":
        vq = VQTokenizer(train_vq(train_set["images"], p.vq))
        vq.save(out / "vq.pt")
        ids = vq.encode(train_set["images"]).numpy().astype(np.int64)
        np.savez_compressed(out / "discrete.npz", tokens=ids, labels=train_set["labels"],
                            vocab_size=vq.vocab_size)
        stats = evaluate_vq(vq.model, test["images"])
    else:
        kl = train_kl_ae(train_set["images"], p.kl)
        kl.save(out / "kl.pt")
        lat = kl.encode(train_set["images"]).numpy()
        np.savez_compressed(out / "continuous.npz", latents=lat, labels=train_set["labels"])
        rec = kl.decode(kl.encode(test["images"]))
        stats = {"psnr": _psnr(test["images"], rec), "scale_factor": kl.scale_factor}
    write_json(OUT / "metrics" / f"tokenizer_{kind}.json", stats)


# one registered name per dvc.yaml stage (see the package docstring)
@stage("emigm.tokenize-discrete", params=EMIGMParams)
def tokenize_discrete(p: EMIGMParams) -> None:
    """VQ-VAE on the training images → out/tokens/{vq.pt,discrete.npz}."""
    tokenize(p, "discrete")


@stage("emigm.tokenize-continuous", params=EMIGMParams)
def tokenize_continuous(p: EMIGMParams) -> None:
    """KL autoencoder on the training images → out/tokens/{kl.pt,continuous.npz}."""
    tokenize(p, "continuous")
