"""``python -m unmask.stages prime.prepare``: tokenize the data section's source into
``data/{train,valid}`` shards and ``data/meta.json`` (:func:`unmask.prime.data.prepare`)."""

from __future__ import annotations

import time
from typing import Any

from unmask.prime import data
from unmask.prime.config import PrimeParams
from unmask.stages import stage

__all__ = ["prepare"]


@stage("prime.prepare", params=PrimeParams)
def prepare(p: PrimeParams) -> dict[str, Any]:
    """Tokenize the data section's source into data/{train,valid} shards and data/meta.json."""
    t0 = time.perf_counter()
    meta = data.prepare(p.data, data.DATA)
    print(f"prepare: {meta['counts']} sequences of shape {meta['shape']}, C = "
          f"{meta['vocab_size']} ({time.perf_counter() - t0:.0f}s) → {data.DATA}")
    return meta
