"""FVD (Unterthiner et al. 2018) with the commonly used I3D TorchScript, and per-frame FID.

FVD is the Fréchet distance (:mod:`unmask.metrics.frechet`) between Gaussian fits of I3D
(Kinetics-400) features of real and generated videos. The implementation that video papers
report (StyleGAN-V, DIGAN, and the code bases derived from them) uses the TorchScript
``i3d_torchscript.pt`` called as

    features = i3d(videos, rescale=False, resize=True, return_features=True)   # [N, 400]

with ``videos`` float ``[N, C, T, H, W]`` in [−1, 1] (uint8 frames map as ``x / 127.5 − 1``); the
model resizes to 224×224 itself. The checkpoint cannot be downloaded here: :func:`compute_fvd`
loads it from a local path (argument or ``$UNMASK_I3D_PATH``) and otherwise reports FVD
*unavailable* with the reason. Clip length matters (FVD-16 vs FVD-128): it is logged as the
``num_frames`` param.

:func:`per_frame_fid` is a different metric under its own name ``fid_per_frame``: standard FID
(:func:`unmask.metrics.fidelity.compute_fidelity`) over all frames of all videos, ignoring time.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from unmask.metrics import MetricResult
from unmask.metrics.fidelity import compute_fidelity
from unmask.metrics.frechet import frechet_distance_from_features
from unmask.metrics.inception import cache_dir, file_sha256

__all__ = [
    "FID_PER_FRAME",
    "FVD",
    "I3D_ENV",
    "compute_fvd",
    "find_i3d",
    "i3d_features",
    "load_i3d",
    "per_frame_fid",
    "videos_to_i3d_input",
]

FVD = "fvd"
FID_PER_FRAME = "fid_per_frame"
#: Environment variable naming the local ``i3d_torchscript.pt``.
I3D_ENV = "UNMASK_I3D_PATH"
I3D_KWARGS: dict[str, bool] = {"rescale": False, "resize": True, "return_features": True}

VideoLayout = Literal["auto", "nthwc", "ntchw"]


def find_i3d(path: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """``(path, "")`` when the I3D TorchScript file exists, else ``(None, reason)``."""
    given = path if path is not None else os.environ.get(I3D_ENV) or None
    if given is None:
        return None, (
            "FVD needs the I3D TorchScript (i3d_torchscript.pt, as used by StyleGAN-V/DIGAN), "
            f"which cannot be downloaded here; pass its local path or set {I3D_ENV}"
        )
    p = Path(given)
    if not p.is_file():
        return None, f"I3D TorchScript not found at {p}"
    return p, ""


def load_i3d(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> torch.jit.ScriptModule:
    """``torch.jit.load`` the I3D TorchScript from a local file (eval mode, on ``device``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"I3D TorchScript not found at {p}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
        return torch.jit.load(str(p), map_location=torch.device(device)).eval()


def _video_layout(shape: tuple[int, ...], layout: VideoLayout) -> str:
    if len(shape) == 4:
        return "nthw"
    if len(shape) != 5:
        raise ValueError(f"videos must be [N,T,H,W], [N,T,H,W,C] or [N,T,C,H,W]; got {shape}")
    last, second = shape[4] in (1, 3), shape[2] in (1, 3)
    if layout == "auto":
        if last and second:
            raise ValueError(f"ambiguous video layout {shape}: pass layout='nthwc' or 'ntchw'")
        if not (last or second):
            raise ValueError(f"no channel dim of size 1 or 3 in video shape {shape}")
        return "nthwc" if last else "ntchw"
    return layout


def _as_uint8_videos(videos: Any) -> torch.Tensor:
    if torch.is_tensor(videos):
        x = videos.detach().cpu()
    else:
        arr = np.asarray(videos)
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if x.dtype != torch.uint8:
        raise TypeError(f"videos must be uint8 (got {x.dtype})")
    return x


def _to_ntchw3(x: torch.Tensor, kind: str) -> torch.Tensor:
    """uint8 videos in layout ``kind`` → uint8 ``[N, T, 3, H, W]`` (a view where possible)."""
    if kind == "nthw":
        x = x.unsqueeze(2)
    elif kind == "nthwc":
        x = x.permute(0, 1, 4, 2, 3)
    return x.expand(-1, -1, 3, -1, -1) if x.shape[2] == 1 else x


def videos_to_i3d_input(videos: Any, layout: VideoLayout = "auto") -> torch.Tensor:
    """uint8 videos ``[N,T,H,W]``/``[N,T,H,W,C]``/``[N,T,C,H,W]`` → float ``[N, 3, T, H, W]``,
    ``x / 127.5 − 1`` ∈ [−1, 1] (grayscale replicated to RGB)."""
    x = _as_uint8_videos(videos)
    x = _to_ntchw3(x, _video_layout(tuple(x.shape), layout))
    return (x.permute(0, 2, 1, 3, 4).float() / 127.5 - 1.0).contiguous()


@torch.no_grad()
def i3d_features(
    model: torch.nn.Module,
    videos: Any,
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    layout: VideoLayout = "auto",
) -> np.ndarray:
    """I3D features ``[N, D]`` (float64) of uint8 videos, batch by batch."""
    x = _as_uint8_videos(videos)
    kind = _video_layout(tuple(x.shape), layout)
    dev = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu")
    )
    feats = []
    for start in range(0, x.shape[0], batch_size):
        chunk = _to_ntchw3(x[start : start + batch_size], kind)
        inp = (chunk.permute(0, 2, 1, 3, 4).float() / 127.5 - 1.0).contiguous().to(dev)
        out = model(inp, **I3D_KWARGS)
        if isinstance(out, (tuple, list)):
            out = out[0]
        feats.append(out.reshape(out.shape[0], -1).double().cpu().numpy())
    return np.concatenate(feats, axis=0)


def _fvd_cache_path(root: Path, key: str, i3d_sha: str) -> Path:
    return root / "fvd" / f"{key}-i3d-{i3d_sha[:8]}.npz"


def compute_fvd(
    videos: Any,
    reference_videos: Any,
    *,
    i3d_path: str | os.PathLike[str] | None = None,
    reference_key: str | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    layout: VideoLayout = "auto",
) -> MetricResult:
    """FVD between generated ``videos`` and ``reference_videos`` (uint8, see
    :func:`videos_to_i3d_input`), or *unavailable* when the I3D TorchScript is absent.

    ``reference_videos`` may be a cache key string; with ``reference_key`` the reference's I3D
    features are cached under ``<cache>/fvd/`` and reused by later calls.
    """
    x = _as_uint8_videos(videos)
    kind = _video_layout(tuple(x.shape), layout)
    n, t = int(x.shape[0]), int(x.shape[1])
    h, w = (x.shape[2], x.shape[3]) if kind in ("nthw", "nthwc") else (x.shape[3], x.shape[4])
    params: dict[str, Any] = {
        "num_videos": n,
        "num_frames": t,
        "resolution": f"{h}x{w}",
        "features": "i3d-kinetics400",
    }
    path, reason = find_i3d(i3d_path)
    if path is None:
        return MetricResult.unavailable(FVD, reason, **params)
    sha = file_sha256(path)
    params["i3d_sha256"] = sha[:16]
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    model = load_i3d(path, dev)
    root = Path(cache_root) if cache_root is not None else cache_dir()

    key = reference_videos if isinstance(reference_videos, str) else reference_key
    cache = _fvd_cache_path(root, key, sha) if key is not None else None
    if isinstance(reference_videos, str) and (cache is None or not cache.is_file()):
        raise FileNotFoundError(
            f"FVD reference {reference_videos!r} is not cached at {cache}; call compute_fvd "
            "once with the reference videos and reference_key=<key>"
        )
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            ref_feats, meta = z["features"], json.loads(str(z["meta"]))
        if not isinstance(reference_videos, str):
            r = _as_uint8_videos(reference_videos)
            if (int(r.shape[0]), int(r.shape[1])) != (meta["num_videos"], meta["num_frames"]):
                raise ValueError(
                    f"FVD reference key {key!r} is cached for {meta['num_videos']} videos of "
                    f"{meta['num_frames']} frames, but {r.shape[0]} x {r.shape[1]} were given: "
                    "the key must change when the reference set changes"
                )
    else:
        ref_feats = i3d_features(
            model, reference_videos, batch_size=batch_size, device=dev, layout=layout
        )
        r = _as_uint8_videos(reference_videos)
        meta = {"num_videos": int(r.shape[0]), "num_frames": int(r.shape[1])}
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.parent / f"{cache.stem}.{os.getpid()}.tmp.npz"
            np.savez(tmp, features=ref_feats, meta=np.array(json.dumps(meta)))
            os.replace(tmp, cache)
    gen_feats = i3d_features(model, x, batch_size=batch_size, device=dev, layout=layout)
    value = frechet_distance_from_features(gen_feats, ref_feats)
    params.update(
        num_reference=int(meta["num_videos"]),
        reference_frames=int(meta["num_frames"]),
        reference=key or "in-memory",
        feature_dim=int(gen_feats.shape[1]),
    )
    return MetricResult.ok(FVD, value, **params)


def per_frame_fid(
    videos: Any,
    reference_videos: Any,
    *,
    reference_key: str | None = None,
    frame_stride: int = 1,
    layout: VideoLayout = "auto",
    **fidelity_kwargs: Any,
) -> MetricResult:
    """Standard FID over the frames of all videos, reported as ``fid_per_frame``.

    Every ``frame_stride``-th frame of each video is an image; ``reference_videos`` may be a
    cache key (the key is suffixed ``-frames<stride>`` so it never collides with an image set).
    Extra keyword arguments go to :func:`~unmask.metrics.fidelity.compute_fidelity`.
    """

    def frames(v: Any) -> torch.Tensor:
        x = _as_uint8_videos(v)
        x = _to_ntchw3(x, _video_layout(tuple(x.shape), layout))[:, ::frame_stride]
        return x.reshape(-1, *x.shape[2:])

    key = None if reference_key is None else f"{reference_key}-frames{frame_stride}"
    if isinstance(reference_videos, str):
        ref: Any = f"{reference_videos}-frames{frame_stride}"
        key = None
    else:
        ref = frames(reference_videos)
    res = compute_fidelity(
        frames(videos), ref, metrics=("fid",), reference_key=key, layout="nchw", **fidelity_kwargs
    )["fid"]
    assert res.value is not None
    return MetricResult.ok(FID_PER_FRAME, res.value, **res.params, frame_stride=frame_stride)
