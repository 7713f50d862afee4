"""FaceForensics++ loader on tiny mp4s in the official original_sequences layout."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from unmask.data.errors import DatasetLayoutError, VideoTooShortError
from unmask.data.faceforensics import FaceForensics

VIDEOS = "original_sequences/youtube/c23/videos"


def _mp4(path: Path, n: int, size: tuple[int, int] = (48, 32)) -> None:
    """n constant-grey frames with intensity 5·i (lossless h264), size = (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = imageio_ffmpeg.write_frames(
        str(path),
        size,
        fps=25,
        codec="libx264",
        macro_block_size=16,
        quality=None,
        output_params=["-crf", "0"],
    )
    w.send(None)
    for i in range(n):
        w.send(np.full((size[1], size[0], 3), 5 * i, np.uint8).tobytes())
    w.close()


def test_clips_of_16_frames_in_order(tmp_path: Path) -> None:
    _mp4(tmp_path / VIDEOS / "000.mp4", 40)
    ds = FaceForensics(tmp_path, clip_length=16, size=16)
    clips = list(ds)
    assert [c["key"] for c in clips] == ["000:0", "000:16"]
    v = clips[1]["video"]
    assert v.shape == (16, 16, 16, 3) and v.dtype == np.uint8
    np.testing.assert_allclose(v.mean(axis=(1, 2, 3)), 5 * np.arange(16, 32), atol=2)
    assert ds.count_clips() == 2
    strided = list(
        FaceForensics(tmp_path, clip_length=4, frame_stride=3, size=None, max_clips_per_video=2)
    )
    assert [c["key"] for c in strided] == ["000:0", "000:12"]
    assert strided[0]["video"].shape == (4, 32, 48, 3)
    np.testing.assert_allclose(strided[1]["video"].mean(axis=(1, 2, 3)), [60, 75, 90, 105], atol=2)


def test_short_and_corrupt_videos_are_named_and_skipped(tmp_path: Path) -> None:
    _mp4(tmp_path / VIDEOS / "000.mp4", 16)
    _mp4(tmp_path / VIDEOS / "001.mp4", 10)
    (tmp_path / VIDEOS / "002.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    ds = FaceForensics(tmp_path, size=8)
    assert [c["key"] for c in ds] == ["000:0"]
    assert [Path(s.path).name for s in ds.skipped] == ["001.mp4", "002.mp4"]
    assert "10 frames" in ds.skipped[0].reason
    with pytest.raises(VideoTooShortError, match="001.mp4"):
        list(FaceForensics(tmp_path, size=8).clips(tmp_path / VIDEOS / "001.mp4"))


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="compression 'c40'") as e:
        FaceForensics(tmp_path, compression="c40")
    assert "original_sequences/youtube/<compression>/videos" in str(e.value)
    (tmp_path / VIDEOS).mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="no .mp4 videos"):
        FaceForensics(tmp_path)
