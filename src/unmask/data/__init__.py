"""Datasets (one loader per format) and the token-shard store every pipeline writes through.

* :mod:`unmask.data.fashion_mnist`: the embedded default dataset (Debian IDX files).
* :mod:`unmask.data.shards`: memory-mapped token shards with a hashed manifest.
* :mod:`unmask.data.preextract`: a loader streamed through a tokenizer into a shard (corrupt
  files skipped by name, flipped copies, resume).
* :mod:`unmask.data.fixtures`: tiny datasets in the real formats (tests, smoke runs).
"""

from unmask.data import fashion_mnist
from unmask.data.shards import ShardError, ShardWriter, TokenShards

__all__ = ["fashion_mnist", "ShardError", "ShardWriter", "TokenShards"]
