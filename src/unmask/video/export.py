"""Export decoded clips: animated GIF (PIL, always available), MP4 (imageio-ffmpeg's bundled
ffmpeg, when installed) and a frames-grid PNG (one clip per row) for quick inspection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["save_gif", "save_mp4", "frames_grid", "tile_clips"]


def _rgb(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4):
        raise ValueError(f"frames must be uint8 [T, H, W] or [T, H, W, 3], got "
                         f"{frames.dtype} {list(frames.shape)}")
    return np.repeat(frames[..., None], 3, -1) if frames.ndim == 3 else frames


def tile_clips(clips: np.ndarray, pad: int = 2) -> np.ndarray:
    """[N, T, H, W(, 3)] clips → [T, H', W', 3] frames showing the N clips side by side."""
    clips = np.stack([_rgb(c) for c in clips])
    n, t, h, w, _ = clips.shape
    out = np.full((t, h, n * (w + pad) - pad, 3), 255, np.uint8)
    for k in range(n):
        out[:, :, k * (w + pad) : k * (w + pad) + w] = clips[k]
    return out


def save_gif(frames: np.ndarray, path: str | Path, fps: float = 4.0, scale: int = 1) -> Path:
    """Write uint8 frames [T, H, W(, 3)] as a looping GIF (``scale``: nearest upsampling)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = _rgb(frames)
    ims = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
           for f in rgb]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
    return path


def save_mp4(frames: np.ndarray, path: str | Path, fps: float = 4.0, scale: int = 1) -> Path:
    """Write uint8 frames [T, H, W(, 3)] as an H.264 MP4 through imageio-ffmpeg (sides are
    padded to even sizes, as yuv420p needs)."""
    import imageio_ffmpeg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = _rgb(frames)
    if scale > 1:
        rgb = rgb.repeat(scale, 1).repeat(scale, 2)
    t, h, w, _ = rgb.shape
    rgb = np.pad(rgb, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    writer = imageio_ffmpeg.write_frames(str(path), (rgb.shape[2], rgb.shape[1]), fps=fps,
                                         codec="libx264", pix_fmt_out="yuv420p", quality=8,
                                         macro_block_size=1)
    writer.send(None)
    for f in rgb:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return path


def frames_grid(clips: np.ndarray, path: str | Path, pad: int = 2, scale: int = 2) -> Path:
    """PNG with one clip [T, H, W(, 3)] per row, frames left to right."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clips = np.stack([_rgb(c) for c in clips])
    n, t, h, w, _ = clips.shape
    out = np.full((n * (h + pad) - pad, t * (w + pad) - pad, 3), 255, np.uint8)
    for i in range(n):
        for j in range(t):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = clips[i, j]
    im = Image.fromarray(out)
    im.resize((im.width * scale, im.height * scale), Image.NEAREST).save(path)
    return path
