"""Evaluation metrics: FID/KID/precision-recall/IS, FVD, mIoU, CLIP score, sampling cost.

Every metric comes back as a :class:`MetricResult`. A metric whose weights or inputs are missing
is *unavailable*: ``value is None``, ``available is False`` and ``reason`` says why — it is never
replaced by a different number under the same name. :func:`as_mlflow_metrics` drops unavailable
results; :func:`as_mlflow_params` logs every result's settings (and the reason for the missing
ones), so a run records both what was measured and what could not be.

(The CLIP-score function is ``unmask.metrics.clip_score.clip_score``; at package level it is
``compute_clip_score``, since ``unmask.metrics.clip_score`` names the submodule.)

Submodules are imported lazily (``unmask.metrics.compute_fidelity`` pulls in torch-fidelity only
when first used):

- :mod:`~unmask.metrics.inception`  — offline FID Inception-v3 weights for torch-fidelity
- :mod:`~unmask.metrics.fidelity`   — FID, KID, precision/recall, IS via torch-fidelity
- :mod:`~unmask.metrics.frechet`    — Fréchet distance between Gaussians
- :mod:`~unmask.metrics.fvd`        — FVD (I3D TorchScript) and per-frame FID
- :mod:`~unmask.metrics.segmentation` — confusion-matrix mIoU
- :mod:`~unmask.metrics.clip_score` — CLIP score with open_clip from a local checkpoint
- :mod:`~unmask.metrics.cost`       — NFE, ISR, seconds/sample, samples/s, peak memory
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from unmask.runtime import lazy_exports

__all__ = [
    "MetricResult",
    "as_mlflow_metrics",
    "as_mlflow_params",
    # lazily imported
    "compute_fidelity",
    "reference_features",
    "reference_key",
    "frechet_distance",
    "gaussian_statistics",
    "compute_fvd",
    "load_i3d",
    "per_frame_fid",
    "MeanIoU",
    "mean_iou",
    "confusion_matrix",
    "CITYSCAPES_CATEGORIES",
    "compute_clip_score",
    "CostMeter",
    "measure_cost",
]

#: MLflow caps a param value's length; longer reasons are cut to this.
_MAX_PARAM_CHARS = 500


@dataclass(frozen=True)
class MetricResult:
    """One metric value, or the explicit statement that it could not be computed.

    Attributes:
        name: metric name as logged (``"fid"``, ``"kid"``, ``"fvd"``, ``"fid_per_frame"``, ...).
        value: the number (finite) when available, else ``None``.
        available: whether ``value`` holds the standard metric.
        reason: why it is unavailable (``None`` when available).
        params: settings that define the number (sample counts, reference key, weights, ...).
    """

    name: str
    value: float | None
    available: bool
    reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a metric needs a name")
        if self.available:
            if self.value is None or not math.isfinite(float(self.value)):
                raise ValueError(f"metric {self.name!r}: available but value is {self.value!r}")
            object.__setattr__(self, "value", float(self.value))
        else:
            if self.value is not None:
                raise ValueError(f"metric {self.name!r}: unavailable but has a value")
            if not self.reason:
                raise ValueError(f"metric {self.name!r}: unavailable needs a reason")

    @classmethod
    def ok(cls, name: str, value: float, **params: Any) -> MetricResult:
        """An available result."""
        return cls(name, float(value), True, None, dict(params))

    @classmethod
    def unavailable(cls, name: str, reason: str, **params: Any) -> MetricResult:
        """An explicit 'could not compute', with the reason."""
        return cls(name, None, False, reason, dict(params))


def _iter_results(
    results: MetricResult | Iterable[MetricResult] | Mapping[str, MetricResult],
) -> list[MetricResult]:
    if isinstance(results, MetricResult):
        return [results]
    if isinstance(results, Mapping):
        return list(results.values())
    return list(results)


def as_mlflow_metrics(
    results: MetricResult | Iterable[MetricResult] | Mapping[str, MetricResult],
) -> dict[str, float]:
    """``{name: value}`` for the available results only (for ``mlflow.log_metrics``)."""
    return {r.name: float(r.value) for r in _iter_results(results) if r.available}  # type: ignore[arg-type]


def _param_str(v: Any) -> str:
    s = v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)
    return s if len(s) <= _MAX_PARAM_CHARS else s[: _MAX_PARAM_CHARS - 1] + "…"


def as_mlflow_params(
    results: MetricResult | Iterable[MetricResult] | Mapping[str, MetricResult],
) -> dict[str, str]:
    """``{"<name>.<setting>": value}`` for every result (for ``mlflow.log_params``).

    Unavailable results add ``<name>.available = False`` and ``<name>.unavailable_reason``.
    """
    out: dict[str, str] = {}
    for r in _iter_results(results):
        for k, v in r.params.items():
            out[f"{r.name}.{k}"] = _param_str(v)
        if not r.available:
            out[f"{r.name}.available"] = "False"
            out[f"{r.name}.unavailable_reason"] = _param_str(r.reason)
    return out


# submodules load on first use (unmask.runtime.lazy_exports): torch-fidelity, open_clip and
# the I3D code only when a metric of theirs is asked for
_LAZY = {
    "unmask.metrics.fidelity": ("compute_fidelity", "reference_key", "reference_features"),
    "unmask.metrics.frechet": ("frechet_distance", "gaussian_statistics"),
    "unmask.metrics.fvd": ("compute_fvd", "load_i3d", "per_frame_fid"),
    "unmask.metrics.segmentation": ("MeanIoU", "mean_iou", "confusion_matrix",
                                    "CITYSCAPES_CATEGORIES"),
    "unmask.metrics.clip_score": ("compute_clip_score",),
    "unmask.metrics.cost": ("CostMeter", "measure_cost"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
