"""FaceForensics++ original videos cut into fixed-length clips (DI's video experiment).

Reads the layout of the official download script
(``original_sequences/youtube/<compression>/videos/NNN.mp4``, compression ``raw``, ``c23`` or
``c40``) and decodes with the ffmpeg binary shipped in ``imageio-ffmpeg``, streaming frames so a
video is never held whole. Each video gives consecutive clips of ``clip_length`` frames (taking
every ``frame_stride``-th frame), each frame ADM center-cropped to ``size``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
from PIL import Image

from unmask.data.errors import (
    CorruptFileError,
    DatasetLayoutError,
    OnError,
    SkipsCorruptFiles,
    VideoTooShortError,
    require_dir,
)
from unmask.data.transforms import center_crop_arr

__all__ = ["FaceForensics", "LAYOUT", "iter_video_frames", "count_frames"]

LAYOUT = """
<root>/
  original_sequences/youtube/<compression>/videos/000.mp4, 001.mp4, ...
      <compression> is one of raw, c23, c40 (as written by faceforensics_download_v4.py)
"""
_NAME = "FaceForensics++"
_VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov")


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video to uint8 RGB frames [H, W, 3], one at a time.

    Raises:
        CorruptFileError: ffmpeg cannot open or decode the file.
    """
    path = Path(path)
    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
        w, h = meta["size"]
        for buf in gen:
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
    except (OSError, RuntimeError, ValueError, KeyError, StopIteration) as e:
        raise CorruptFileError(path, f"cannot decode video ({type(e).__name__}: {e})") from None


def count_frames(path: str | Path) -> int:
    """Exact number of frames (one fast ffmpeg pass that decodes without converting)."""
    try:
        return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
    except (OSError, RuntimeError, ValueError) as e:
        raise CorruptFileError(path, f"cannot read video ({type(e).__name__}: {e})") from None


class FaceForensics(SkipsCorruptFiles):
    """Clips of ``clip_length`` frames from FaceForensics++ original sequences.

    Args:
        root: the FaceForensics++ folder (see :data:`LAYOUT`).
        compression: ``"c23"`` (the usual choice), ``"c40"`` or ``"raw"``.
        clip_length: frames per clip (16 in DI).
        frame_stride: keep every n-th frame.
        size: ADM center-crop size of each frame; None keeps the decoded frames.
        max_clips_per_video: at most this many consecutive, non-overlapping clips per video
            (None: all of them).
        on_error: ``"skip"`` or ``"raise"`` for a corrupt video or one shorter than a clip.

    Items: ``{"key": "<video stem>:<first frame>", "video": uint8 [T, S, S, 3]}``.
    """

    def __init__(
        self,
        root: str | Path,
        compression: str = "c23",
        clip_length: int = 16,
        frame_stride: int = 1,
        size: int | None = 256,
        max_clips_per_video: int | None = None,
        on_error: OnError = "skip",
    ):
        self._init_skips(on_error)
        if clip_length < 1 or frame_stride < 1:
            raise ValueError("clip_length and frame_stride must be >= 1")
        self.root = require_dir(_NAME, root, LAYOUT, "dataset root")
        self.video_dir = require_dir(
            _NAME,
            self.root / "original_sequences" / "youtube" / compression / "videos",
            LAYOUT,
            f"videos folder for compression {compression!r}",
        )
        self.videos = sorted(p for p in self.video_dir.iterdir() if p.suffix.lower() in _VIDEO_EXTS)
        if not self.videos:
            raise DatasetLayoutError(_NAME, self.video_dir, "no .mp4 videos", LAYOUT)
        self.clip_length = clip_length
        self.frame_stride = frame_stride
        self.size = size
        self.max_clips_per_video = max_clips_per_video

    @property
    def frames_per_clip_span(self) -> int:
        """Source frames one clip spans (``clip_length`` frames taken ``frame_stride`` apart)."""
        return self.clip_length * self.frame_stride

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        return center_crop_arr(Image.fromarray(frame), self.size) if self.size else frame

    def clips(self, path: str | Path) -> Iterator[dict[str, Any]]:
        """The clips of one video, streamed.

        Raises:
            VideoTooShortError: the video has fewer frames than one clip spans.
            CorruptFileError: the video cannot be decoded.
        """
        path = Path(path)
        span = self.frames_per_clip_span
        buf: list[np.ndarray] = []
        n_frames = n_clips = 0
        start = 0
        for n_frames, frame in enumerate(iter_video_frames(path), start=1):
            if (n_frames - 1 - start) % self.frame_stride == 0:
                buf.append(self._frame(frame))
            if n_frames - start == span:
                yield {"key": f"{path.stem}:{start}", "video": np.stack(buf)}
                n_clips += 1
                buf, start = [], n_frames
                if self.max_clips_per_video is not None and n_clips >= self.max_clips_per_video:
                    return
        if n_clips == 0:
            raise VideoTooShortError(
                path, f"video has {n_frames} frames, shorter than one clip ({span} frames)"
            )

    def count_clips(self) -> int:
        """Number of clips the dataset yields (one counting pass over every video; corrupt
        videos count 0)."""
        total = 0
        for v in self.videos:
            try:
                n = count_frames(v) // self.frames_per_clip_span
            except CorruptFileError:
                continue
            total += n if self.max_clips_per_video is None else min(n, self.max_clips_per_video)
        return total

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for video in self.videos:
            try:
                yield from self.clips(video)
            except CorruptFileError as err:  # includes VideoTooShortError
                self._skip(err)
