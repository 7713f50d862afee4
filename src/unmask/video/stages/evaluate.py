"""``python -m unmask.stages video.evaluate`` → ``samples/{*.gif, *.mp4, *.png}, metrics.json,
report/index.html``: unconditional clips and frame-conditioned predictions (the first
``sample.context_frames`` frames of test clips given through ``x_init``), decoded and exported,
scored by per-frame FID (when the Inception weights are installed) and FVD (when I3D weights
are present; otherwise reported unavailable with the reason). The run is tagged
``unmask.task=video``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from unmask import pretokenized as tp
from unmask.metrics import MetricResult, as_mlflow_metrics
from unmask.metrics.fvd import compute_fvd, per_frame_fid
from unmask.metrics.heldout import UNAVAILABLE_REASON, fid_weights_available
from unmask.models.transformer import Transformer
from unmask.pretokenized_evaluate import finish_evaluate
from unmask.runtime import write_timings
from unmask.stages import stage
from unmask.video.export import frames_grid, save_gif, save_mp4, tile_clips
from unmask.video.params import TASK_TAG, SampleSection, VideoParams
from unmask.video.sampling import sample_video

__all__ = ["run_evaluate"]


def _sample(model: Transformer, meta: dict[str, Any], s: SampleSection, n: int, seed: int,
            context: torch.Tensor | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in tqdm(range(0, n, s.batch_size), desc="cond" if context is not None else "uncond",
                  leave=False):
        b = min(s.batch_size, n - i)
        with torch.no_grad():
            out.append(sample_video(
                model, batch_size=b, frames=meta["frames"], grid=tuple(meta["grid"]),
                mask_id=meta["vocab_size"], context=None if context is None else context[i:i + b],
                method=s.method, steps=s.steps, schedule=s.schedule, temperature=s.temperature,
                choice_temperature=s.choice_temperature, generator=g))
    return torch.cat(out)


def _decode(tok: Any, clips: torch.Tensor) -> np.ndarray:
    n, t = clips.shape[:2]
    frames = tok.decode(clips.reshape(n * t, *clips.shape[2:]))
    return frames.reshape(n, t, *frames.shape[1:])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@stage("video.evaluate", params=VideoParams)
def run_evaluate(p: VideoParams) -> dict[str, Any]:
    """Unconditional and frame-conditioned clips; per-frame FID, FVD; metrics.json, report."""
    model, meta, tok, train_info = tp.load_trained()
    _, (te, te_raw) = tp.load_tokens("test", "test_raw")
    te = torch.from_numpy(te).long()
    s = p.sample
    k = min(s.context_frames, meta["frames"] - 1)
    n_cond = min(s.num_cond, len(te))
    t0 = time.perf_counter()
    unc = _decode(tok, _sample(model, meta, s, s.num_uncond, s.seed))
    cond_tok = _sample(model, meta, s, n_cond, s.seed + 1, context=te[:n_cond, :k])
    seconds = time.perf_counter() - t0
    cond = _decode(tok, cond_tok)
    recon = _decode(tok, te[:n_cond])  # the tokenizer's reconstruction of the truth

    samples = tp.SAMPLES
    figs: dict[str, Path] = {}
    m = min(8, len(unc))
    save_gif(tile_clips(unc[:m]), samples / "unconditional.gif", fps=s.fps, scale=2)
    figs["unconditional samples (rows: clips, frames left to right)"] = frames_grid(
        unc[:m], samples / "unconditional.png")
    mc = min(4, n_cond)
    pairs = np.stack([c for i in range(mc) for c in (cond[i], te_raw[i])])
    save_gif(tile_clips(pairs), samples / "conditioned.gif", fps=s.fps, scale=2)
    figs[f"frame-conditioned (first {k} frames given; rows: prediction, truth)"] = frames_grid(
        pairs, samples / "conditioned.png")
    try:
        save_mp4(tile_clips(unc[:m]), samples / "unconditional.mp4", fps=s.fps, scale=2)
    except (ImportError, OSError, RuntimeError) as e:  # MP4 is optional; the GIF always works
        print(f"evaluate: MP4 export skipped ({type(e).__name__}: {e})")

    results = []
    if not p.evaluate.fid:
        results.append(MetricResult.unavailable("fid_per_frame", "disabled in params"))
    elif not fid_weights_available():
        results.append(MetricResult.unavailable("fid_per_frame", UNAVAILABLE_REASON))
    else:
        results.append(per_frame_fid(unc, te_raw, batch_size=p.evaluate.fid_batch_size,
                                     verbose=False))
    if p.evaluate.fvd:
        results.append(compute_fvd(unc, te_raw, i3d_path=p.evaluate.i3d_path))
    else:
        results.append(MetricResult.unavailable("fvd", "disabled in params"))
    given_exact = bool(torch.equal(cond_tok[:, :k], te[:n_cond, :k]))
    future = slice(k, None)
    metrics = {**as_mlflow_metrics(results),
               "cond_psnr_future": _psnr(cond[:, future], te_raw[:n_cond, future]),
               "tokenizer_psnr_future": _psnr(recon[:, future], te_raw[:n_cond, future]),
               "cond_token_acc_future": float((cond_tok[:, k:] == te[:n_cond, k:]).float()
                                              .mean()),
               "sample_seconds": round(seconds, 1)}
    reasons = {r.name: r.reason for r in results if not r.available}
    out = {**{r.name: r.value for r in results}, "unavailable": reasons,
           "context_frames": k, "context_kept_exactly": given_exact,
           **{kk: v for kk, v in metrics.items()
              if not kk.startswith(("fid", "fvd")) and kk != "sample_seconds"},
           "num_uncond": len(unc), "num_cond": n_cond, "train_loss": train_info.get("loss"),
           "train_steps": train_info.get("step")}
    write_timings(tp.TIMINGS / "evaluate.json", {"sample_seconds": round(seconds, 1)})
    finish_evaluate(p, TASK_TAG, out, metrics, reasons, figs, [samples])
    print("evaluate: " + ", ".join(f"{r.name} = {r.value if r.available else 'unavailable'}"
                                    for r in results)
          + f", context kept exactly: {given_exact} ({seconds:.0f}s sampling) → {tp.METRICS}")
    return out
