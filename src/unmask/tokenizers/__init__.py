"""Tokenizers: images (or other data) ↔ discrete token grids with ids 0..V−1.

Every tokenizer exposes ``vocab_size``, ``identity`` (a string naming its exact configuration)
and ``hash`` (stored in shard manifests), ``encode`` and ``decode``.
"""

from unmask.tokenizers.pixel import PixelTokenizer

__all__ = ["PixelTokenizer"]
