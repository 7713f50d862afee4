"""Where the default pipeline's stages write (:data:`PATHS`, the ``outs`` of the root
``dvc.yaml``, relative to the project root). Every stage gets its image tokenizer from
:func:`unmask.tokenizers.build_tokenizer` ``(params.tokenizer)``, so samples and held-out data
are decoded through the same one."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PATHS"]


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
