"""Clips of the video pipelines as uint8 arrays (:func:`load_clips`): Moving Fashion-MNIST
generated on the fly, FaceForensics++ mp4s or TECO DMLab npz episodes, per ``data`` section
(:class:`~unmask.video.params.DataSection`)."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from unmask.data import dmlab, faceforensics, moving_fmnist
from unmask.video.params import DataSection

__all__ = ["load_clips"]


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
