"""Stage ``sample``: a grid of class-conditional samples (with CFG) from the trained model.

Loads ``models/model.pt`` (EMA weights unless ``sample.checkpoint: raw``), draws
``sample.n_per_class`` samples for every class with :func:`unmask.sampling.sample_with_info`
and writes to ``samples/``:

* ``samples.npz``: ``tokens`` [N, h, w], ``images`` uint8 [N, H, W] (decoded through
  :func:`unmask.tokenizers.build_tokenizer`: H = h for pixel tokens, 4h for the VQ-VAE), ``labels``;
* ``grid.png``: rows = classes (the first 12 samples of each);
* ``chain.png``: one unmasking chain per class, left to right;
* ``info.json``: method, steps, NFE, wall time and seconds per sample.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unmask import schedules
from unmask.config import Params
from unmask.models import ConditionedDenoiser
from unmask.reporting.images import chain_strip, image_grid, save_png
from unmask.runtime import git_commit, write_timings
from unmask.sampling import sample_with_info
from unmask.stages import stage
from unmask.stages.common import PATHS
from unmask.tokenizers import build_tokenizer
from unmask.tracking import make_tracker
from unmask.training import load_checkpoint

GRID_COLUMNS = 12
TIMING_KEYS = ("seconds", "seconds_per_sample")  # wall clock: returned, never in info.json


def sampling_schedule(params: Params, name: str | None = None) -> schedules.Schedule:
    """The κ schedule to sample / score with: ``name``, else the training schedule."""
    if name is None or name == params.train.schedule:
        return schedules.get(params.train.schedule, **params.train.schedule_kwargs)
    return schedules.get(name)


def generate(
    checkpoint: str | Path,
    params: Params,
    out_dir: str | Path,
    *,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Sample ``n_per_class`` images per class from ``checkpoint`` with ``params.sample`` and
    write samples.npz, grid.png, chain.png and info.json to ``out_dir``. Returns the info."""
    s, out_dir = params.sample, Path(out_dir)
    ckpt = load_checkpoint(checkpoint, ema=s.checkpoint == "ema")
    model, cfg = ckpt.model, ckpt.model_config
    tok = build_tokenizer(params.tokenizer)
    if tok.vocab_size != cfg.vocab_size or cfg.grid is None:
        raise ValueError(
            f"checkpoint {checkpoint} (vocab {cfg.vocab_size}, grid {cfg.grid}) does "
            f"not match the tokenizer {tok.identity}"
        )
    n_cls, h, w = cfg.num_classes, *cfg.grid
    class_names = class_names or [str(c) for c in range(n_cls)]
    y = torch.arange(n_cls).repeat_interleave(s.n_per_class)
    with torch.no_grad():
        res = sample_with_info(
            ConditionedDenoiser(model, y),
            batch_size=len(y),
            seq_len=h * w,
            mask_id=cfg.mask_id,
            method=s.method,
            steps=s.steps,
            schedule=sampling_schedule(params, s.schedule),
            temperature=s.temperature,
            top_p=s.top_p,
            generator=torch.Generator().manual_seed(s.seed),
            cfg_scale=s.cfg_scale,
            cfg_schedule=s.cfg_schedule,
            cfg_interval=s.cfg_interval,
            choice_temperature=s.choice_temperature,
            return_trajectory=True,
            progress=True,
        )
    tokens = res.tokens.reshape(-1, h, w)
    images = tok.decode(tokens)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        out_dir / "samples.npz",
        tokens=tokens.numpy().astype(np.int16),
        images=images,
        labels=y.numpy(),
    )
    size = images.shape[1:3]
    scale = max(1, round(56 / size[0]))  # ~56 px per image in the PNGs
    # the grid shows the first GRID_COLUMNS samples of each class (all are in samples.npz)
    grid = images.reshape(n_cls, s.n_per_class, *images.shape[1:])[:, :GRID_COLUMNS]
    save_png(image_grid(grid, class_names, scale=scale), out_dir / "grid.png")

    # One chain per class (its first sample), chain_frames states evenly spaced in time.
    traj = res.trajectory[:, :: s.n_per_class].reshape(-1, n_cls, h, w)
    idx = np.unique(np.linspace(0, len(traj) - 1, s.chain_frames).round().astype(int))
    frames = traj[idx]
    masked = frames == cfg.mask_id
    decoded = tok.decode(frames.masked_fill(masked, 0).reshape(-1, h, w))
    decoded = decoded.reshape(*frames.shape[:2], *decoded.shape[1:])
    # A token covers (H/h)×(W/w) pixels: show it masked there.
    up = masked.numpy().repeat(size[0] // h, axis=-2).repeat(size[1] // w, axis=-1)
    strip = chain_strip(decoded, up)
    times = [f"t={float(res.times[i]):.2f}" for i in idx]
    save_png(image_grid(strip, class_names, scale=scale, col_labels=times), out_dir / "chain.png")

    info = {
        "method": s.method,
        "steps": res.steps,
        "nfe": res.nfe,
        "nfe_label": res.nfe_label,
        "guided_steps": res.guided_steps,
        "cfg_scale": s.cfg_scale,
        "n_samples": len(y),
        "seconds": round(res.seconds, 3),
        "seconds_per_sample": res.seconds / len(y),
        "idle_step_ratio": res.idle_step_ratio,
        "checkpoint_step": ckpt.step,
    }
    # info.json is a DVC-hashed output: wall-clock values stay out of it (returned only).
    stable = {k: v for k, v in info.items() if k not in TIMING_KEYS}
    (out_dir / "info.json").write_text(json.dumps(stable, indent=2) + "\n")
    return info


@stage("sample", params=Params)
def run(params: Params) -> dict[str, Any]:
    names = params.data.class_names
    tracker = make_tracker(params.tracking)
    tags = {"stage": "sample", "git_commit": git_commit()}
    with tracker.start_run(params.tracking.experiment, "sample", params=params.flat(), tags=tags):
        info = generate(PATHS.checkpoint, params, PATHS.samples, class_names=names)
        tracker.log_metrics(
            {k: info[k] for k in ("nfe", "seconds", "seconds_per_sample")},
            step=info["checkpoint_step"],
        )
        for name in ("grid.png", "chain.png", "info.json"):
            tracker.log_artifact(PATHS.samples / name)
    # wall clock outside DVC outputs (runs/timings is not declared to DVC)
    write_timings("runs/timings/sample.json",
                  {k: info[k] for k in ("seconds", "seconds_per_sample")})
    print(
        f"sample: {info['n_samples']} samples, {info['method']} {info['steps']} steps, "
        f"NFE {info['nfe']}, {info['seconds_per_sample'] * 1e3:.1f} ms/sample → {PATHS.samples}"
    )
    return info

