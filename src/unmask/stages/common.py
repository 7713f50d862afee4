"""What the default pipeline's stages share: where each writes (:data:`PATHS`, the ``outs`` of
the root ``dvc.yaml``, relative to the project root) and the one image tokenizer they decode
through (:func:`load_tokenizer`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unmask.config import Params
from unmask.tokenizers import build_tokenizer

__all__ = ["PATHS", "load_tokenizer"]


class _Paths:
    """Where each stage writes (relative to the working directory)."""

    prepared = Path("data/prepared")  # {train,val,test}.npz, manifest.json
    tokens = Path("data/tokens")  # {train,val,test}/ token shards
    tokenizer_metrics = Path("metrics/tokenizer.json")  # PSNR, codebook usage (held out)
    tokenizer_history = Path("metrics/tokenizer_history.csv")  # VQ-VAE training curve
    run_dir = Path("runs/train")  # resumable training checkpoints (not a DVC out)
    models = Path("models")  # model.pt (final checkpoint), train.json
    samples = Path("samples")  # samples.npz, grid.png, chain.png, info.json
    metrics = Path("metrics")  # metrics.json, train_history.csv
    reports = Path("reports")  # index.html, metrics.csv

    @property
    def checkpoint(self) -> Path:
        return self.models / "model.pt"


PATHS = _Paths()


def load_tokenizer(params: Params) -> Any:
    """The pipeline's image tokenizer: the per-pixel quantiser (``tokenizer.kind: pixel``) or
    the VQ-VAE trained by the ``train-tokenizer`` stage, loaded from ``tokenizer.path`` and
    checked against the ``tokenizer.vq`` section (``kind: vq``). The one place every stage
    (tokenize, train, sample, evaluate, report) gets it from, so samples and held-out data are
    decoded through the same tokenizer; its ``hash`` is checked against the token shards'
    manifests."""
    return build_tokenizer(params.tokenizer)
