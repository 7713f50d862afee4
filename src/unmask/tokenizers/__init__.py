"""Tokenizers: images (or other data) ↔ discrete token grids with ids 0..V−1.

Every tokenizer exposes ``vocab_size``, ``identity`` (a string naming its exact configuration)
and ``hash`` (stored in shard manifests), ``encode`` and ``decode``. :func:`build_tokenizer`
makes the one a params ``tokenizer`` section describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from unmask.tokenizers.pixel import PixelTokenizer
from unmask.tokenizers.vq import VQTokenizer

if TYPE_CHECKING:
    from unmask.config import TokenizerConfig

__all__ = ["PixelTokenizer", "build_tokenizer"]


def build_tokenizer(tc: TokenizerConfig, path: str | Path | None = None
                    ) -> PixelTokenizer | VQTokenizer:
    """The tokenizer of a params ``tokenizer`` section: a :class:`PixelTokenizer`, or the
    trained VQ-VAE loaded from ``path`` (default ``tc.path``), checked against the ``vq``
    section. Here rather than on the section, so reading params does not depend on tokenizer
    code."""
    if tc.kind == "pixel":
        return PixelTokenizer(levels=tc.levels, size=tc.size)
    path = Path(path if path is not None else tc.path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no trained VQ tokenizer (run the 'train-tokenizer' stage: "
            "dvc repro train-tokenizer)"
        )
    tok = VQTokenizer.load(path)
    want = tc.vq.vq_config(tok.cfg.in_channels)
    arch = tok.cfg.architecture()
    diff = {k: (arch[k], want[k]) for k in arch if arch[k] != want[k]}
    if diff:
        raise ValueError(
            f"{path}: the VQ tokenizer was trained with "
            + ", ".join(f"{k}={a}" for k, (a, _) in diff.items())
            + " but tokenizer.vq says "
            + ", ".join(f"{k}={b}" for k, (_, b) in diff.items())
            + " (re-run the 'train-tokenizer' stage)"
        )
    return tok
