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
from unmask.models import ConditionedDenoiser
from unmask.stages import PATHS, git_commit, main, make_tracker
from unmask.stages.sample import sampling_schedule
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


def run(params: Params) -> dict[str, Any]:
    ev = params.evaluate
    tok = params.tokenizer.build()
    held = TokenShards(PATHS.tokens / ev.split, tokenizer_hash=tok.hash)
    n = min(ev.n_sequences, len(held))
    x, y = held.tokens_tensor(slice(0, n), flatten=True), held.labels_tensor(slice(0, n))
    ckpt = load_checkpoint(PATHS.checkpoint, params.model, ema=True)

    bpt, bpt_se = nelbo_bits(ckpt.model, x, y, params)
    bpt_u, bpt_u_se = nelbo_bits(ckpt.model, x, None, params)
    with np.load(PATHS.samples / "samples.npz") as z:
        s_tokens, s_labels = z["tokens"].astype(np.int64), z["labels"]
    stats = sample_statistics(
        s_tokens,
        s_labels,
        held.tokens_tensor(slice(0, n)).numpy(),
        y.numpy(),
        tok.vocab_size,
        tok.decode,
    )
    info = json.loads((PATHS.samples / "info.json").read_text())
    metrics = {
        "nelbo_bpt": bpt,
        "nelbo_bpt_stderr": bpt_se,
        "nelbo_bpt_uncond": bpt_u,
        "nelbo_bpt_uncond_stderr": bpt_u_se,
        "n_heldout": n,
        "nelbo_mc_samples": ev.num_samples,
        **stats,
        "n_samples": info["n_samples"],
        "sample_nfe": info["nfe"],
        "sample_seconds_per_sample": info["seconds_per_sample"],
        "train_step": ckpt.step,
    }
    out = Path(PATHS.metrics / "metrics.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")

    tracker = make_tracker(params.tracking)
    tags = {"stage": "evaluate", "git_commit": git_commit()}
    with tracker.start_run(params.tracking.experiment, "evaluate", params=params.flat(), tags=tags):
        tracker.log_metrics(metrics, step=ckpt.step)
        tracker.log_artifact(out)
    print(
        f"evaluate: NELBO {bpt:.4f} ± {bpt_se:.4f} bits/token (uncond {bpt_u:.4f}), "
        f"hist TV {stats['hist_tv']:.4f}, unique {stats['unique_fraction']:.2f} → {out}"
    )
    return metrics


if __name__ == "__main__":
    main("evaluate", run=run)
