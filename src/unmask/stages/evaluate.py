"""Stage ``evaluate``: held-out likelihood and sample statistics → ``metrics/metrics.json``.

Likelihood: the continuous-time NELBO (:func:`unmask.likelihood.nelbo`, ``evaluate.num_samples``
stratified Monte-Carlo times per sequence) of ``evaluate.n_sequences`` held-out sequences, in
bits per token, NELBO(x) / (L ln 2), given the class (``nelbo_bpt``) and with the null class
(``nelbo_bpt_uncond``); ``*_stderr`` is the standard error of the mean over sequences (it
includes the Monte-Carlo noise).

Sample statistics, against the held-out set decoded through the same tokenizer:

* ``hist_tv``: total-variation distance ½ Σ_v |p(v) − q(v)| of the token (intensity level)
  histograms of samples and held-out data;
* ``class_mean_mse``: mean over classes of the MSE between the per-class mean sample image and
  the per-class mean held-out image (intensities in [0, 1]);
* ``unique_fraction``: distinct samples / samples.

FID (:func:`fid_scores` = :func:`unmask.metrics.heldout.heldout_fidelity`, the same function
and rules as every ablation trial; Heusel et al. 2017 with the standard 2015-12-05 Inception-v3
through torch-fidelity): the first ``evaluate.fid_num_samples`` generated images
(``samples/samples.npz``, decoded by the sample stage through the pipeline's tokenizer) against
the first ``evaluate.fid_reference`` *real* held-out images of ``data/prepared/<split>.npz``,
with ``fid_std`` (its standard error: delete-half jackknife over ``evaluate.fid_std_subsets``
random halves of the generated samples, reference fixed, seeded by ``evaluate.seed``). Images
are uint8, resized inside torch-fidelity's extractor (TF1 bilinear to 299×299). The reference
features are cached under a key made of the dataset, split, resolution, count and the sha256 of
``data/prepared/manifest.json`` — reused by every later evaluate and ablation trial on the same
data. Also logged: ``kid`` ± ``kid_std``
(subsets of min(``evaluate.kid_subset_size``, N/2)), ``precision`` / ``recall`` (k = 3, on the
same features) and, with ``fid_recon``, ``fid_recon`` (the held-out images reconstructed through
the tokenizer against the originals: the floor the tokenizer puts under any model's FID) and
``fid_vs_recon`` (the samples against those reconstructions). Settings go to MLflow as ``fid.*``
params and to ``metrics.json`` under ``fid_settings``. Without the Inception weights FID is
reported unavailable (``fid_settings.unavailable_reason``), never replaced by another number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from unmask.config import Params
from unmask.data.shards import TokenShards
from unmask.likelihood import nelbo
from unmask.metrics.heldout import fid_params, heldout_fidelity
from unmask.models import ConditionedDenoiser
from unmask.runtime import git_commit, read_timings
from unmask.stages import stage
from unmask.stages.common import PATHS
from unmask.stages.sample import sampling_schedule
from unmask.tokenizers import build_tokenizer
from unmask.tracking import make_tracker
from unmask.training import load_checkpoint


def nelbo_bits(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    labels: torch.Tensor | None,
    params: Params,
) -> tuple[float, float]:
    """Mean NELBO in bits per token over ``tokens`` [N, L] and its standard error.
    ``labels`` None scores with the null class (the unconditional model)."""
    ev = params.evaluate
    gen = torch.Generator().manual_seed(ev.seed)
    schedule = sampling_schedule(params, ev.schedule)
    per_seq = []
    for i in tqdm(range(0, len(tokens), ev.batch_size), desc="nelbo", leave=False):
        x = tokens[i : i + ev.batch_size]
        y = labels[i : i + ev.batch_size] if labels is not None else None
        with torch.no_grad():
            per_seq.append(
                nelbo(
                    ConditionedDenoiser(model, y),
                    x,
                    mask_id=model.cfg.mask_id,
                    schedule=schedule,
                    num_samples=ev.num_samples,
                    generator=gen,
                )
            )
    bits = torch.cat(per_seq).double() / (tokens.shape[1] * math.log(2.0))
    se = float(bits.std() / math.sqrt(len(bits))) if len(bits) > 1 else float("nan")
    return float(bits.mean()), se


def sample_statistics(
    samples: np.ndarray,
    sample_labels: np.ndarray,
    data: np.ndarray,
    data_labels: np.ndarray,
    levels: int,
    decode: Any,
) -> dict[str, float]:
    """Histogram TV, class-mean MSE and unique fraction of token samples [N, h, w] against
    held-out tokens [M, h, w] (see the module docstring)."""
    p = np.bincount(samples.ravel(), minlength=levels) / samples.size
    q = np.bincount(data.ravel(), minlength=levels) / data.size
    img_s = decode(samples).astype(np.float64) / 255.0
    img_d = decode(data).astype(np.float64) / 255.0
    mses = [
        float(((img_s[sample_labels == c].mean(0) - img_d[data_labels == c].mean(0)) ** 2).mean())
        for c in np.unique(sample_labels)
        if (data_labels == c).any()
    ]
    flat = samples.reshape(len(samples), -1)
    return {
        "hist_tv": 0.5 * float(np.abs(p - q).sum()),
        "class_mean_mse": float(np.mean(mses)),
        "unique_fraction": len(np.unique(flat, axis=0)) / len(flat),
    }


def _device_tag() -> str:
    import platform

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}"
    return f"cpu {platform.machine()} ({torch.get_num_threads()} threads)"


def fid_scores(
    params: Params, sample_images: np.ndarray, tok: Any
) -> tuple[dict[str, float], dict[str, Any]]:
    """FID (± ``fid_std``) / KID (± ``kid_std``) / precision-recall of generated uint8 images
    [N, H, W] against the real held-out split, and with ``evaluate.fid_recon`` the tokenizer's
    floor ``fid_recon`` and ``fid_vs_recon`` — :func:`unmask.metrics.heldout.heldout_fidelity`,
    the function every ablation trial calls too (see the module docstring).

    Returns ``(metrics, settings)``: the available numbers, and the settings (MLflow params
    ``fid.*``; ``unavailable_reason`` when the weights are missing)."""
    ev = params.evaluate

    def reconstruct(n: int) -> np.ndarray:
        held = TokenShards(PATHS.tokens / ev.split, tokenizer_hash=tok.hash)
        return tok.decode(held.tokens_tensor(slice(0, n)))

    return heldout_fidelity(
        sample_images,
        ev,
        prepared_dir=PATHS.prepared,
        dataset=params.data.dataset,
        reconstruct=reconstruct if tok is not None else None,
        recon_id=tok.hash if tok is not None else "",
    )


@stage("evaluate", params=Params)
def run(params: Params) -> dict[str, Any]:
    ev = params.evaluate
    tok = build_tokenizer(params.tokenizer)
    held = TokenShards(PATHS.tokens / ev.split, tokenizer_hash=tok.hash)
    n = min(ev.n_sequences, len(held))
    x, y = held.tokens_tensor(slice(0, n), flatten=True), held.labels_tensor(slice(0, n))
    ckpt = load_checkpoint(PATHS.checkpoint, params.model, ema=True)

    bpt, bpt_se = nelbo_bits(ckpt.model, x, y, params)
    bpt_u, bpt_u_se = nelbo_bits(ckpt.model, x, None, params)
    with np.load(PATHS.samples / "samples.npz") as z:
        s_tokens, s_labels, s_images = z["tokens"].astype(np.int64), z["labels"], z["images"]
    stats = sample_statistics(
        s_tokens,
        s_labels,
        held.tokens_tensor(slice(0, n)).numpy(),
        y.numpy(),
        tok.vocab_size,
        tok.decode,
    )
    fid, fid_settings = fid_scores(params, s_images, tok) if ev.fid else ({}, {})
    info = json.loads((PATHS.samples / "info.json").read_text())
    metrics = {
        "nelbo_bpt": bpt,
        "nelbo_bpt_stderr": bpt_se,
        "nelbo_bpt_uncond": bpt_u,
        "nelbo_bpt_uncond_stderr": bpt_u_se,
        "n_heldout": n,
        "nelbo_mc_samples": ev.num_samples,
        **stats,
        **fid,
        "n_samples": info["n_samples"],
        "sample_nfe": info["nfe"],
        "train_step": ckpt.step,
    }
    out = Path(PATHS.metrics / "metrics.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {**metrics, "fid_settings": fid_settings} if fid_settings else metrics
    out.write_text(json.dumps(doc, indent=2) + "\n")

    tracker = make_tracker(params.tracking)
    tags = {"stage": "evaluate", "git_commit": git_commit(), "unmask.device": _device_tag()}
    if fid_settings:
        tags["unmask.dataset_manifest"] = fid_settings["dataset_manifest_sha256"]
    with tracker.start_run(params.tracking.experiment, "evaluate", params=params.flat(), tags=tags):
        if fid_settings:
            tracker.log_params(fid_params(fid_settings))
        tracker.log_metrics(metrics, step=ckpt.step)
        # wall clock goes to MLflow only (metrics.json is hashed in dvc.lock)
        timing = read_timings("runs/timings/sample.json").get("seconds_per_sample")
        if timing is not None:
            tracker.log_metrics({"sample_seconds_per_sample": float(timing)}, step=ckpt.step)
        tracker.log_artifact(out)
    why = fid_settings.get("unavailable_reason", "evaluate.fid is off")
    fid_txt = (
        f"FID {fid['fid']:.2f} ± {fid.get('fid_std', float('nan')):.2f} "
        f"({fid_settings['num_samples']} vs {fid_settings['num_reference']}; tokenizer floor "
        f"{fid.get('fid_recon', float('nan')):.2f})"
        if "fid" in fid
        else f"FID unavailable ({why})"
    )
    print(
        f"evaluate: NELBO {bpt:.4f} ± {bpt_se:.4f} bits/token (uncond {bpt_u:.4f}), "
        f"hist TV {stats['hist_tv']:.4f}, unique {stats['unique_fraction']:.2f}, {fid_txt} → {out}"
    )
    return metrics

