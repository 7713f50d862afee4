"""``python -m unmask.stages prime.train --ell 2``: train the ℓ sub-token model (resumable)
→ ``models/l<ℓ>/{model.pt,train.json}`` (:func:`unmask.prime.pipeline.train_ell`)."""

from __future__ import annotations

from typing import Any

from unmask.prime.config import PrimeParams
from unmask.prime.pipeline import check_ell, train_ell
from unmask.stages import stage

__all__ = ["train"]


@stage("prime.train", params=PrimeParams)
def train(p: PrimeParams, ell: int) -> dict[str, Any]:
    """Train the ℓ sub-token model (resumable) → models/l<ℓ>."""
    check_ell(p, ell)
    return train_ell(p, ell)
