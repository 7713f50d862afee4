"""Datasets (one loader per format) and the token-shard store every pipeline writes through.

* :mod:`unmask.data.fashion_mnist`: the embedded default dataset (Debian IDX files).
* :mod:`unmask.data.shards`: memory-mapped token shards with a hashed manifest.
"""

from unmask.data import fashion_mnist
from unmask.data.shards import ShardError, ShardWriter, TokenShards

__all__ = ["fashion_mnist", "ShardError", "ShardWriter", "TokenShards"]
