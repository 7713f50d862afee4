"""The end of the ``evaluate`` stage over pre-extracted tokens (``joint.evaluate``,
``video.evaluate``): :func:`fid_result` (FID or an *unavailable* result with its reason) and
:func:`finish_evaluate` (metrics.json, the MLflow run, the pipeline's report page)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from unmask.metrics import MetricResult, compute_fidelity
from unmask.metrics.heldout import UNAVAILABLE_REASON, fid_weights_available
from unmask.pretokenized import METRICS, REPORT, start_run, write_json

__all__ = ["fid_result", "finish_evaluate"]


def fid_result(samples: np.ndarray, reference: np.ndarray, key: str, *, enabled: bool = True,
               batch_size: int = 50, name: str = "fid") -> MetricResult:
    """FID of ``samples`` against ``reference`` with the standard offline Inception, or an
    *unavailable* result naming why (weights absent, or disabled in params)."""
    if not enabled:
        return MetricResult.unavailable(name, "disabled in params (evaluate.fid: false)")
    if not fid_weights_available():
        return MetricResult.unavailable(name, UNAVAILABLE_REASON, num_samples=len(samples))
    digest = hashlib.sha256(np.ascontiguousarray(reference).tobytes()).hexdigest()[:12]
    res = compute_fidelity(samples, reference, metrics=("fid",), reference_key=f"{key}-{digest}",
                           batch_size=batch_size, verbose=False)["fid"]
    return dataclasses.replace(res, name=name)  # e.g. fid_mask_to_image in MLflow


def finish_evaluate(p: Any, task_tag: dict[str, str], out: dict[str, Any],
                    metrics: dict[str, Any], reasons: dict[str, str], figures: dict[str, Path],
                    artifacts: list[Path]) -> Path:
    """The end of an evaluate stage: write ``out`` to :data:`METRICS`; log the numeric
    ``metrics`` (others dropped), the ``unavailable.<name>`` reasons as tags and ``artifacts``
    (under ``samples``) as the ``evaluate`` MLflow run; then write the pipeline's page
    (:func:`unmask.reporting.build.write_pipeline_report`: the finished runs of
    ``tracking.experiment``, this one included, with ``figures`` on top) to :data:`REPORT`.
    Returns the page's path."""
    from unmask.reporting.build import write_pipeline_report  # pandas, plotly: only here

    write_json(METRICS, out)
    with start_run(p, "evaluate", task_tag) as tr:
        tr.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
                       step=0)
        if reasons:
            tr.set_tags({f"unavailable.{k}": v for k, v in reasons.items()})
        for a in artifacts:
            tr.log_artifact(a, "samples")
    # after the run has ended: the page reads FINISHED runs only
    return write_pipeline_report(REPORT, title=p.report.title, tracking=p.tracking,
                                 experiment=p.tracking.experiment, figures=figures,
                                 notes={"task": task_tag["unmask.task"]})
