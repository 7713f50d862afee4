"""``python -m unmask.stages prime.evaluate --ell 2``: NELBO, perplexity, samples and idle-step
ratio of ``models/l<ℓ>`` → ``eval/l<ℓ>/{metrics.json,nelbo.npy,samples.txt | samples.png}``
(:func:`unmask.prime.evaluation.evaluate_ell`; MDM-Prime Tab. 2 quantities)."""

from __future__ import annotations

from typing import Any

from unmask.prime.config import PrimeParams
from unmask.prime.evaluation import evaluate_ell
from unmask.prime.pipeline import check_ell
from unmask.stages import stage

__all__ = ["evaluate"]


@stage("prime.evaluate", params=PrimeParams)
def evaluate(p: PrimeParams, ell: int) -> dict[str, Any]:
    """NELBO, perplexity, samples and idle-step ratio of models/l<ℓ> → eval/l<ℓ>."""
    check_ell(p, ell)
    return evaluate_ell(p, ell)
