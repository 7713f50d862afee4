"""The MLflow names (tags, params, metrics) that the papers' ablations log and the report reads.

One place for the strings, so that the writers (:mod:`unmask.prime.stages`,
:mod:`unmask.prime.seeds`, :mod:`unmask.emigm.pipeline`, the Prefect ``ablations/t_min`` flow)
and the MLflow-driven report agree. A run that belongs to a paper's ablation carries

* tag :data:`PAPER` = :data:`PAPER_PRIME` | :data:`PAPER_EMIGM` (| :data:`PAPER_DI`),
* tag :data:`ABLATION` = the axis, and the axis' parameter and metrics:

  - ``prime_l`` (:data:`ABLATION_PRIME_L`): param ``prime.l`` (:data:`PARAM_PRIME_L`, ℓ);
    metrics ``ppl`` (:data:`METRIC_PPL`, text) or ``bits_per_dim``
    (:data:`METRIC_BITS_PER_DIM`, pixels), ``isr`` (:data:`METRIC_ISR`),
    ``nelbo_nats_per_token`` (:data:`METRIC_NELBO`), ``train_seconds``;
  - ``t_min`` (:data:`ABLATION_T_MIN`): param ``train.t_min`` (:data:`PARAM_T_MIN`); metrics
    ``fid`` (:data:`METRIC_FID`; when it cannot be computed, no ``fid`` metric and the tag
    :data:`FID_UNAVAILABLE` holds the reason) and ``train_seconds``
    (:data:`METRIC_TRAIN_SECONDS`), plus the cost ``encoder_tokens_per_sample`` and
    ``seconds_per_step``;

* the training seed as param :data:`PARAM_SEED` (repeats of a point differ only there), and
  :data:`STAGE` (``train`` / ``evaluate`` / ``summary``): the report keeps the ``evaluate`` runs
  of ``prime_l`` (one per ℓ and seed) and the ``summary`` runs of ``t_min`` (one per point).

Select on **both** :data:`PAPER` and :data:`ABLATION`: the foundation-model grids of the
``ablations`` flow (:mod:`unmask.orchestration.runs`) also tag ``unmask.ablation`` with their
axis name — including ``t_min``, whose runs carry the foundation's time convention
(``train.t_min`` = 0, ``train.t_max`` = 1 − eMIGM's t_min) and no ``unmask.paper``. In
:data:`PARAM_T_MIN` of an eMIGM run the value is eMIGM's own t_min (mask-time truncation).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PAPER",
    "PAPER_PRIME",
    "PAPER_EMIGM",
    "PAPER_DI",
    "ABLATION",
    "ABLATION_PRIME_L",
    "ABLATION_T_MIN",
    "STAGE",
    "FID_UNAVAILABLE",
    "PARAM_PRIME_L",
    "PARAM_T_MIN",
    "PARAM_SEED",
    "METRIC_PPL",
    "METRIC_BITS_PER_DIM",
    "METRIC_NELBO",
    "METRIC_ISR",
    "METRIC_FID",
    "METRIC_TRAIN_SECONDS",
    "prime_l_tags",
    "t_min_tags",
]

# -- tags ------------------------------------------------------------------------------------
PAPER = "unmask.paper"
PAPER_PRIME = "mdm-prime"
PAPER_EMIGM = "emigm"
PAPER_DI = "discrete-interpolants"

ABLATION = "unmask.ablation"
ABLATION_PRIME_L = "prime_l"
ABLATION_T_MIN = "t_min"

STAGE = "unmask.stage"
#: set (with the reason as value) on a run whose FID could not be computed
FID_UNAVAILABLE = "unmask.fid_unavailable"

# -- params ----------------------------------------------------------------------------------
PARAM_PRIME_L = "prime.l"
PARAM_T_MIN = "train.t_min"
PARAM_SEED = "train.seed"

# -- metrics ---------------------------------------------------------------------------------
METRIC_PPL = "ppl"  # ELBO perplexity, exp(NELBO nats / token)
METRIC_BITS_PER_DIM = "bits_per_dim"  # NELBO in bits per pixel dimension (pixel tokens)
METRIC_NELBO = "nelbo_nats_per_token"
METRIC_ISR = "isr"  # idle-step ratio while sampling (MDM-Prime)
METRIC_FID = "fid"
METRIC_TRAIN_SECONDS = "train_seconds"


def prime_l_tags(stage: str) -> dict[str, Any]:
    """Tags of an MDM-Prime ℓ-comparison run (``stage``: train / evaluate / summary)."""
    return {PAPER: PAPER_PRIME, ABLATION: ABLATION_PRIME_L, STAGE: stage}


def t_min_tags(stage: str) -> dict[str, Any]:
    """Tags of an eMIGM t_min-ablation run (``stage``: train / summary)."""
    return {PAPER: PAPER_EMIGM, ABLATION: ABLATION_T_MIN, STAGE: stage}
