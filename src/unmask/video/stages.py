"""Stages of the video pipelines (``pipelines/video-default``, ``pipelines/faceforensics``,
``pipelines/dmlab``), run from the pipeline folder (``--params FILE``, ``--set key=value``)::

    python -m unmask.stages video.tokenize   → tokens/{tokens.npz, meta.json, vq.pt}
    python -m unmask.stages video.train      → models/{model.pt, train.json}
    python -m unmask.stages video.evaluate   → samples/{*.gif, *.mp4, *.png}, metrics.json,
                                               report/index.html

``tokenize`` cuts clips of ``data.frames`` frames (Moving Fashion-MNIST generated on the fly,
FaceForensics++ mp4s, TECO DMLab npz episodes), fits or loads the image tokenizer and encodes
every frame (pre-extracted tokens (N, T, h, w)). ``train`` trains the video transformer
(``model.attention`` ``full`` or ``factorized``, space + time positions). ``evaluate`` samples
unconditional clips and frame-conditioned predictions (the first ``sample.context_frames``
frames of test clips given through ``x_init``), decodes them, writes GIF / MP4 / frame grids,
and scores per-frame FID (always, when the Inception weights are installed) and FVD (when I3D
weights are present; otherwise reported unavailable with the reason). MLflow runs are tagged
``unmask.task=video``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from unmask import pretokenized as tp
from unmask.config import Section
from unmask.data import dmlab, faceforensics, moving_fmnist
from unmask.metrics import MetricResult, as_mlflow_metrics
from unmask.metrics.fvd import compute_fvd, per_frame_fid
from unmask.metrics.heldout import UNAVAILABLE_REASON, fid_weights_available
from unmask.models import ModelConfig, Transformer
from unmask.runtime import seed_everything, write_timings
from unmask.stages import stage
from unmask.video.export import frames_grid, save_gif, save_mp4, tile_clips
from unmask.video.sampling import sample_video

__all__ = ["VideoParams", "run_tokenize", "run_train", "run_evaluate", "TASK_TAG"]

TASK_TAG = {"unmask.task": "video"}


class DataSection(Section):
    """Clips of ``frames`` frames.

    * ``moving_fmnist``: ``num_train`` / ``num_test`` videos of ``num_items`` garments
      bouncing on a ``size``² canvas (train / test Fashion-MNIST items, seeds 0 / 1);
    * ``faceforensics``: ``root`` (FaceForensics++ layout), ``compression``, ``frame_stride``,
      frames center-cropped to ``size``; the last ``test_fraction`` of the videos is the test
      split; at most ``max_clips_per_video`` clips each;
    * ``dmlab``: ``root`` with TECO ``train/`` and ``test/`` npz episodes.

    ``resize`` (optional) area-resizes every frame to resize × resize after loading.
    """

    kind: Literal["moving_fmnist", "faceforensics", "dmlab"] = "moving_fmnist"
    root: str | None = None
    frames: int = Field(default=16, gt=0)
    size: int = Field(default=64, gt=0)
    resize: int | None = Field(default=None, gt=0)
    num_train: int | None = Field(default=None, gt=0)
    num_test: int | None = Field(default=None, gt=0)
    num_items: int = Field(default=2, ge=1)
    compression: str = "c23"
    frame_stride: int = Field(default=1, gt=0)
    max_clips_per_video: int | None = Field(default=None, gt=0)
    test_fraction: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _root(self) -> DataSection:
        if self.kind != "moving_fmnist" and self.root is None:
            raise ValueError(f"'root': set it to the {self.kind} dataset folder")
        return self


class SampleSection(tp.SamplerSection):
    """``num_uncond`` unconditional clips and ``num_cond`` predictions from the first
    ``context_frames`` frames of test clips; GIF / MP4 at ``fps``."""

    num_uncond: int = Field(default=16, gt=0)
    num_cond: int = Field(default=16, gt=0)
    context_frames: int = Field(default=4, gt=0)
    batch_size: int = Field(default=16, gt=0)
    fps: float = Field(default=4.0, gt=0)
    seed: int = 0


class EvaluateSection(tp.FIDSection):
    """Per-frame FID, and FVD with the I3D weights at ``i3d_path`` (``fvd: false`` skips it)."""

    fvd: bool = True
    i3d_path: str | None = None


class VideoParams(tp.StageParams):
    """``pipelines/{video-default,faceforensics,dmlab}/params.yaml``."""

    data: DataSection = DataSection()
    sample: SampleSection = SampleSection()
    evaluate: EvaluateSection = EvaluateSection()
    tracking: tp.TrackingSection = tp.TrackingSection(experiment="video")
    report: tp.ReportSection = tp.ReportSection(title="Video model")

    @field_validator("model")
    @classmethod
    def _model_values(cls, v: dict[str, Any]) -> dict[str, Any]:
        return tp.check_model(v, lambda m: model_config(m, _PROBE))


# -- tokenize -------------------------------------------------------------------------------------
def _resize(clips: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or clips.shape[2] == size:
        return clips
    x = torch.from_numpy(clips).float()
    gray = x.dim() == 4
    x = x[..., None] if gray else x
    n, t, h, w, c = x.shape
    x = x.reshape(n * t, h, w, c).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    x = x.permute(0, 2, 3, 1).reshape(n, t, size, size, c).round().clamp(0, 255).byte().numpy()
    return x[..., 0] if gray else x


def load_clips(d: DataSection, split: str,
               skipped: list[dict[str, str]] | None = None) -> np.ndarray:
    """uint8 clips [N, T, H, W] (grayscale) or [N, T, H, W, 3] of ``split`` (train / test).
    Corrupt or too short videos are skipped and appended to ``skipped`` (path, reason)."""
    limit = d.num_train if split == "train" else d.num_test
    if d.kind == "moving_fmnist":
        ds = moving_fmnist.MovingFashionMNIST.from_default(split, d.root, num_videos=limit or 1000,
                                             num_frames=d.frames, size=d.size,
                                             num_items=d.num_items)
        clips = np.stack([it["video"] for it in tqdm(ds, desc=f"generate {split}")])
        return _resize(clips, d.resize)
    if d.kind == "faceforensics":
        ds = faceforensics.FaceForensics(str(d.root), d.compression, clip_length=d.frames,
                           frame_stride=d.frame_stride, size=d.size,
                           max_clips_per_video=d.max_clips_per_video)
        n_test = int(round(d.test_fraction * len(ds.videos)))
        videos = ds.videos[len(ds.videos) - n_test:] if split == "test" else (
            ds.videos[: len(ds.videos) - n_test])
        if not videos:
            videos = ds.videos[-1:]  # tiny sets: evaluate on the last video
        items = [c["video"] for c in ds.iter_videos(videos)]
    else:
        ds = dmlab.DMLab(str(d.root), split, clip_length=d.frames)
        items = [c["video"] for c in ds]
    if skipped is not None:
        skipped.extend({"path": r.path, "reason": r.reason} for r in ds.skipped)
    if not items:
        why = f" ({len(ds.skipped)} files skipped, e.g. {ds.skipped[0]})" if ds.skipped else ""
        raise ValueError(f"data: no {split} clips of {d.frames} frames found under "
                         f"{d.root}{why}")
    return _resize(np.stack(items[:limit]), d.resize)


@stage("video.tokenize", params=VideoParams)
def run_tokenize(p: VideoParams) -> dict[str, Any]:
    """Cut the clips, fit or load the image tokenizer, store every frame's tokens."""
    t0 = time.perf_counter()
    skipped: list[dict[str, str]] = []
    train_clips, test_clips = (load_clips(p.data, "train", skipped),
                               load_clips(p.data, "test", skipped))
    frames = train_clips.reshape(-1, *train_clips.shape[2:])
    tok, tok_meta = tp.fit_tokenizer(p.tokenizer, frames, tp.TOKENS)

    def encode(clips: np.ndarray) -> np.ndarray:
        flat = clips.reshape(-1, *clips.shape[2:])
        ids = (tok.encode(flat) if p.tokenizer.kind == "pixel"
               else tok.encode(flat, batch_size=p.tokenizer.batch_size))
        return ids.numpy().astype(np.int32).reshape(len(clips), clips.shape[1], *ids.shape[1:])

    tr, te = encode(train_clips), encode(test_clips)
    meta = {"tokenizer": tok_meta, "vocab_size": int(tok.vocab_size), "frames": tr.shape[1],
            "grid": list(tr.shape[2:]), "counts": {"train": len(tr), "test": len(te)},
            "frame_shape": list(test_clips.shape[2:]), "num_skipped": len(skipped),
            "skipped": skipped}
    seconds = round(time.perf_counter() - t0, 1)
    write_timings(tp.TIMINGS / "tokenize.json", {"seconds": seconds})
    tp.finish_tokenize(p, TASK_TAG, meta, train=tr, test=te, test_raw=test_clips)
    print(f"tokenize: {meta['counts']} clips of {meta['frames']} frames "
          f"({len(skipped)} bad files skipped), tokens/frame "
          f"{meta['grid']} (V = {meta['vocab_size']}), {seconds}s → {tp.TOKENS}")
    return meta


def model_config(model: dict[str, Any], meta: dict[str, Any]) -> ModelConfig:
    """The ``model`` section completed with the tokens' shape (``meta``: vocab_size, grid,
    frames); space + time positions unless ``model.pos`` says otherwise."""
    m = {"pos": "spacetime", **model, "vocab_size": meta["vocab_size"],
         "grid": tuple(meta["grid"]), "frames": meta["frames"], "num_classes": 0}
    m.pop("seq_len", None)
    return ModelConfig(**m)


#: a stand-in shape to check the ``model`` section against when params are read
_PROBE = {"vocab_size": 2, "grid": (1, 1), "frames": 2}


# -- train ----------------------------------------------------------------------------------------
@stage("video.train", params=VideoParams)
def run_train(p: VideoParams) -> dict[str, Any]:
    """Train the video transformer on the clips' tokens (DI §4.2.1, Table 5)."""
    meta, (train_tokens,) = tp.load_tokens("train")
    x = torch.from_numpy(train_tokens).long()
    cfg = model_config(p.model, meta)
    seed_everything(p.train.seed)  # the initialisation draws from the global RNG
    model = Transformer(cfg)
    return tp.train_stage(p, model, x, tp.RUNS / "video", meta, TASK_TAG,
                              seq_len=cfg.length, attention=cfg.attention)


# -- evaluate -------------------------------------------------------------------------------------
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
    tp.finish_evaluate(p, TASK_TAG, out, metrics, reasons, figs, [samples])
    print("evaluate: " + ", ".join(f"{r.name} = {r.value if r.available else 'unavailable'}"
                                    for r in results)
          + f", context kept exactly: {given_exact} ({seconds:.0f}s sampling) → {tp.METRICS}")
    return out

