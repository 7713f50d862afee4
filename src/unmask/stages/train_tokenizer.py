"""Stage ``train-tokenizer``: train the image tokenizer and measure it on held-out images.

``tokenizer.kind: vq`` trains the small VQ-VAE (:func:`unmask.tokenizers.vq.train_vq`) on the
first ``tokenizer.vq.n_train`` images of ``data/prepared/train.npz`` and saves it to
``tokenizer.path`` (``models/tokenizer.pt``). ``kind: pixel`` has nothing to learn: the file
then records the quantiser's configuration only (so the stage has the same outputs).

Either way it writes ``metrics/tokenizer.json`` (a DVC metric), measured on the held-out
``data/prepared/test.npz`` (never seen by the tokenizer):

* ``recon_psnr_db``: 10·log10(255² / MSE) of decode(encode(x)) against x over all pixels
  (a pixel tokenizer's coarser grid is upsampled back by pixel repetition);
* ``codebook_perplexity``: exp(entropy of the token histogram) (= V when all ids are equally
  used) and ``codebook_usage``: the fraction of the V ids used at least once;

and, for the VQ-VAE, its training curve to ``metrics/tokenizer_history.csv`` (a DVC plot).
Wall time goes to ``runs/timings/train-tokenizer.json`` (no DVC output): the VQ-VAE is a pure
function of ``tokenizer.vq.seed``, the data and the code, and its outputs say nothing else.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from unmask.config import Params
from unmask.runtime import seed_everything, write_timings
from unmask.stages import stage
from unmask.stages.common import PATHS
from unmask.tokenizers import build_tokenizer
from unmask.tokenizers.vq import VQConfig, VQTokenizer, codebook_stats, psnr, train_vq

PIXEL_FORMAT = "unmask.pixel/1"


def reconstruction_metrics(tok, images: np.ndarray) -> dict[str, float]:
    """PSNR (dB) of decode(encode(images)) and codebook usage of the tokens of ``images``."""
    tokens = tok.encode(images)
    recon = tok.decode(tokens)
    if recon.shape != images.shape:  # a pixel tokenizer at a coarser grid: repeat pixels
        fy, fx = images.shape[1] // recon.shape[1], images.shape[2] // recon.shape[2]
        recon = np.repeat(np.repeat(recon, fy, axis=1), fx, axis=2)
        if recon.shape != images.shape:
            raise ValueError(f"cannot compare reconstructions {recon.shape} with {images.shape}")
    stats = codebook_stats(tokens, tok.vocab_size)
    return {
        "recon_psnr_db": psnr(images, recon),
        "codebook_perplexity": stats["perplexity"],
        "codebook_usage": stats["usage"],
        "vocab_size": tok.vocab_size,
        "token_grid": list(tokens.shape[1:]),
        "n_heldout": len(images),
    }


@stage("train-tokenizer", params=Params)
def run(params: Params) -> dict:
    tc = params.tokenizer
    with np.load(PATHS.prepared / "train.npz") as z:
        train_images = z["images"]
    with np.load(PATHS.prepared / "test.npz") as z:
        held_out = z["images"]
    path = Path(tc.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    start = time.perf_counter()
    if tc.kind == "vq":
        n = tc.vq.n_train or len(train_images)
        channels = 1 if train_images.ndim == 3 else train_images.shape[-1]
        cfg = VQConfig.from_dict(tc.vq.vq_config(channels))
        seed_everything(cfg.seed)  # train_vq reseeds torch; numpy / python too
        model = train_vq(train_images[:n], cfg)
        VQTokenizer(model).save(path)
        history = model.history
    else:
        tok = build_tokenizer(tc)
        torch.save({"format": PIXEL_FORMAT, "identity": tok.identity}, path)
    seconds = time.perf_counter() - start
    tok = build_tokenizer(tc, path)  # exactly what the later stages will load
    metrics = {
        "kind": tc.kind,
        **reconstruction_metrics(tok, held_out),
    }
    if history:
        metrics["train_steps"] = history[-1]["step"]
        metrics["train_images"] = int(min(tc.vq.n_train or len(train_images), len(train_images)))
    PATHS.tokenizer_metrics.parent.mkdir(parents=True, exist_ok=True)
    PATHS.tokenizer_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    # wall clock stays out of the DVC-tracked metrics file (a rerun must write the same bytes)
    write_timings("runs/timings/train-tokenizer.json", {"train_seconds": round(seconds, 1)})
    with open(PATHS.tokenizer_history, "w", newline="") as f:
        fields = ["step", "recon_mse", "commit", "psnr", "perplexity", "usage", "restarts"]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    print(
        f"tokenizer: {tok.identity[:60]}… held-out PSNR {metrics['recon_psnr_db']:.2f} dB, "
        f"codebook perplexity {metrics['codebook_perplexity']:.1f} / {tok.vocab_size}, "
        f"usage {metrics['codebook_usage']:.2f} ({seconds:.0f}s) → {path}"
    )
    return metrics

