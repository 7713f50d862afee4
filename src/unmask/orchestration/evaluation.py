"""Score one checkpoint under one params setting: the body of every ablation trial.

Thin over the pipeline's stages: :func:`unmask.stages.sample.generate` draws the class grid
(``sample.*`` params; writes ``grid.png``, ``chain.png``, ``samples.npz``, ``info.json``), then

- ``fid`` ± ``fid_std``, ``kid`` ± ``kid_std``, ``precision``, ``recall`` (and with
  ``evaluate.fid_recon`` ``fid_recon`` / ``fid_vs_recon``):
  :func:`unmask.metrics.heldout.heldout_fidelity` — the pipeline's evaluate stage's function,
  with the same params (``evaluate.fid_num_samples``, ``evaluate.fid_reference``,
  ``evaluate.fid_std_subsets``, ``evaluate.kid_subset_size``) — of the decoded samples against the
  *real* held-out images of ``<prepared_dir>/<evaluate.split>.npz``, so a trial's ``fid`` and
  the pipeline's are the same metric on the same reference (shared cached features); settings
  logged as ``fid.*`` params. When the Inception weights are missing and ``metric`` is ``auto``:
  an explicit ``fid.available = False`` param with the reason (never another number named
  ``fid``);
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

from unmask.data.shards import TokenShards
from unmask.metrics.heldout import (
    UNAVAILABLE_REASON,
    fid_params,
    fid_weights_available,
    heldout_fidelity,
)
from unmask.orchestration.settings import EvalSettings
from unmask.stages.evaluate import nelbo_bits, sample_statistics
from unmask.stages.sample import generate
from unmask.tokenizers import build_tokenizer
from unmask.training import load_checkpoint

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

    return (True, "") if fid_weights_available() else (False, UNAVAILABLE_REASON)


def evaluate_checkpoint(checkpoint: str | Path, params: Any, settings: EvalSettings,
                        out_dir: str | Path, tokens_dir: str | Path, *,
                        nelbo: bool = False,
                        prepared_dir: str | Path | None = None) -> Evaluation:
    """Sample ``checkpoint`` with ``params.sample`` and score it (see the module docstring).

    Args:
        checkpoint: checkpoint file (or run folder).
        params: a validated :class:`unmask.config.Params` (with ``sample.n_per_class`` set to
            the trial's sample count).
        settings: how to score (``metric``; a non-null ``fid_reference`` replaces
            ``evaluate.fid_reference`` — then the trial's reference differs from the pipeline's).
        out_dir: where samples and figures go.
        tokens_dir: the token shards folder (``<tokens_dir>/<evaluate.split>`` is held out).
        nelbo: also score the held-out NELBO (training-time axes).
        prepared_dir: the prepared images (``<split>.npz``, ``manifest.json``); default the
            ``prepared`` folder beside ``tokens_dir`` (``data/prepared`` next to ``data/tokens``).
    """
    import torch  # why: torch is slow to import


    out_dir = Path(out_dir)
    prepared = Path(prepared_dir if prepared_dir is not None
                    else Path(tokens_dir).parent / "prepared")
    tok = build_tokenizer(params.tokenizer)
    info = generate(checkpoint, params, out_dir, class_names=params.data.class_names)
    with np.load(out_dir / "samples.npz") as z:
        s_tokens, s_labels, s_images = z["tokens"].astype(np.int64), z["labels"], z["images"]

    ev = params.evaluate
    split = ev.split
    held = TokenShards(Path(tokens_dir) / split, tokenizer_hash=tok.hash, verify=False)
    n_stats = min(ev.n_sequences, len(held))
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
        ok, reason = fid_available()
        if not ok and settings.metric == "fid":
            raise RuntimeError(f"metric 'fid' requested but {reason}")
        ref_n = getattr(settings, "fid_reference", None)
        if ref_n is not None:
            ev = ev.model_copy(update={"fid_reference": ref_n})
        fid, fid_settings = heldout_fidelity(
            s_images, ev, prepared_dir=prepared, dataset=params.data.dataset,
            reconstruct=lambda n: tok.decode(held.tokens_tensor(slice(0, n))),
            recon_id=tok.hash, batch_size=getattr(settings, "fid_batch_size", None),
            verbose=False)
        result.params.update(fid_params(fid_settings))
        if "fid" in fid:
            metrics.update(fid)
            result.primary = "fid"

    if nelbo:
        ckpt = load_checkpoint(checkpoint, ema=True)
        n = min(ev.n_sequences, len(held))
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

