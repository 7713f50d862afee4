"""FaceForensics++ original videos cut into fixed-length clips (DI's video experiment).

Reads the layout of the official download script
(``original_sequences/youtube/<compression>/videos/NNN.mp4``, compression ``raw``, ``c23`` or
``c40``) and decodes with the ffmpeg binary shipped in ``imageio-ffmpeg``, streaming frames. Each
video gives consecutive clips of ``clip_length`` frames (taking every ``frame_stride``-th frame),
each frame ADM center-cropped to ``size``.

One bad file never stops the dataset: a video that ffmpeg cannot open, that fails to decode
part-way (ffmpeg exits with an error), or that is shorter than one clip is skipped and recorded
in ``skipped`` (with ``on_error="skip"``); its clips are released only once the video decoded
cleanly, so a damaged video contributes no clips at all.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable, Iterator
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


def _one_line(text: str, first: bool = False, limit: int = 200) -> str:
    """One non-empty line of an ffmpeg message (the last, or the first error), shortened: a
    skip reason fits on one line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0 if first else -1] if lines else "no message")[:limit]


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video to uint8 RGB frames [H, W, 3], one at a time.

    ffmpeg runs with ``-v error -xerror``: it stops at the first decode error and prints it.
    Either (an error line, or a non-zero exit) makes the video corrupt. Why not imageio-ffmpeg's
    reader: it checks neither, and ffmpeg itself conceals damaged frames (garbage pixels,
    dropped frames) and exits 0 unless most frames fail.

    Raises:
        CorruptFileError: ffmpeg cannot open the file, or it stops with a decode error (after
            yielding the frames decoded before it).
    """
    path = Path(path)
    try:  # the header (frame size) through imageio-ffmpeg's parser; this process is closed
        probe = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        w, h = next(probe)["size"]
        probe.close()
    except (OSError, RuntimeError, ValueError, KeyError, StopIteration) as e:
        raise CorruptFileError(
            path, f"cannot open video ({type(e).__name__}: {_one_line(str(e).split('===')[0])})"
        ) from None
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-xerror", "-i", str(path),
           "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = w * h * 3
    n = 0
    # stderr to a file: a pipe could fill up with error lines and block ffmpeg.
    with tempfile.TemporaryFile() as err, subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
    ) as proc:
        assert proc.stdout is not None
        try:
            while buf := proc.stdout.read(frame_bytes):
                if len(buf) < frame_bytes:
                    break
                n += 1
                yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
            rc = proc.wait()
        finally:  # also when the consumer stops early (GeneratorExit): end ffmpeg
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        log = err.read().decode("utf-8", "replace")
        if rc != 0 or log.strip() or len(buf) not in (0, frame_bytes):
            raise CorruptFileError(path, f"decode error after {n} frames (ffmpeg exit {rc}: "
                                         f"{_one_line(log, first=True)})")


def count_frames(path: str | Path) -> int:
    """Exact number of frames (one fast ffmpeg pass that decodes without converting)."""
    try:
        return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
    except (OSError, RuntimeError, ValueError) as e:
        raise CorruptFileError(path, f"cannot read video ({type(e).__name__}: "
                                     f"{_one_line(str(e))})") from None


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
        """The clips of one video, released once the frames they need decoded cleanly (the
        whole video, or up to the last clip kept under ``max_clips_per_video``).

        Raises:
            VideoTooShortError: the video has fewer frames than one clip spans.
            CorruptFileError: the video cannot be opened or decoded (no clip is yielded).
        """
        path = Path(path)
        span = self.frames_per_clip_span
        buf: list[np.ndarray] = []
        done: list[dict[str, Any]] = []
        n_frames = 0
        start = 0
        frames = iter_video_frames(path)
        try:
            for n_frames, frame in enumerate(frames, start=1):
                if (n_frames - 1 - start) % self.frame_stride == 0:
                    buf.append(self._frame(frame))
                if n_frames - start == span:
                    done.append({"key": f"{path.stem}:{start}", "video": np.stack(buf)})
                    buf, start = [], n_frames
                    if self.max_clips_per_video is not None and \
                            len(done) >= self.max_clips_per_video:
                        break
        finally:
            frames.close()  # stops ffmpeg when the last wanted clip ends before the video
        if not done:
            raise VideoTooShortError(
                path, f"video has {n_frames} frames, shorter than one clip ({span} frames)"
            )
        yield from done

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

    def iter_videos(self, videos: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
        """The clips of ``videos`` (e.g. one split of :attr:`videos`), in order; a corrupt or
        too short video is skipped and recorded in ``skipped`` (or raised, ``on_error="raise"``)."""
        for video in videos:
            try:
                yield from self.clips(video)
            except CorruptFileError as err:  # includes VideoTooShortError
                self._skip(err)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_videos(self.videos)
