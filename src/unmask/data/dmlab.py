"""DeepMind Lab episodes in the TECO benchmark format (``.npz`` per episode).

TECO's DMLab release holds ``{train,test}/<episode>.npz`` files, each with ``video``
(uint8 [T, H, W, 3], T = 300 frames of 64×64) and ``actions`` (int [T], the action taken at
each step). Episodes are cut into consecutive non-overlapping clips of ``clip_length`` frames
(the whole episode when ``clip_length`` is None), actions sliced along.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from unmask.data.errors import (
    CorruptFileError,
    DatasetLayoutError,
    OnError,
    SkipsCorruptFiles,
    VideoTooShortError,
    require_dir,
)

__all__ = ["DMLab", "LAYOUT", "load_episode"]

LAYOUT = """
<root>/
  train/<episode>.npz     keys: video uint8 [T, H, W, 3], actions int [T]
  test/<episode>.npz
"""
_NAME = "DMLab (TECO episodes)"


def load_episode(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one episode: ``(video uint8 [T, H, W, 3], actions int64 [T])``.

    Raises:
        CorruptFileError: unreadable archive (truncated, damaged compressed data), missing
            keys, or inconsistent shapes.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "video" not in data or "actions" not in data:
                raise CorruptFileError(path, f"expected keys video and actions, has {data.files}")
            video, actions = data["video"], data["actions"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CorruptFileError(path, f"unreadable npz ({type(e).__name__}: {e})") from None
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise CorruptFileError(
            path, f"video must be uint8 [T, H, W, 3], got {video.dtype} {list(video.shape)}"
        )
    actions = np.asarray(actions).reshape(-1)
    if len(actions) != len(video):
        raise CorruptFileError(path, f"{len(actions)} actions for {len(video)} frames")
    return video, actions.astype(np.int64)


class DMLab(SkipsCorruptFiles):
    """Video clips with their actions from TECO-format DMLab episodes.

    Args:
        root: the DMLab folder (see :data:`LAYOUT`).
        split: ``"train"`` or ``"test"`` (the sub-folder read).
        clip_length: frames per clip; None yields whole episodes.
        on_error: ``"skip"`` or ``"raise"`` for a corrupt or too short episode.

    Items: ``{"key": "<episode>:<first frame>", "video": uint8 [T, H, W, 3],
    "actions": int64 [T]}``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        clip_length: int | None = None,
        on_error: OnError = "skip",
    ):
        self._init_skips(on_error)
        if clip_length is not None and clip_length < 1:
            raise ValueError("clip_length must be >= 1 or None")
        self.root = require_dir(_NAME, root, LAYOUT, "dataset root")
        self.split_dir = require_dir(_NAME, self.root / split, LAYOUT, f"{split}/ folder")
        self.episodes = sorted(self.split_dir.glob("*.npz"))
        if not self.episodes:
            raise DatasetLayoutError(_NAME, self.split_dir, "no .npz episodes", LAYOUT)
        self.clip_length = clip_length

    def clips(self, path: str | Path) -> list[dict[str, Any]]:
        """All clips of one episode (raises for a corrupt or too short one)."""
        path = Path(path)
        video, actions = load_episode(path)
        n = self.clip_length or len(video)
        if len(video) < n or n == 0:
            raise VideoTooShortError(path, f"episode has {len(video)} frames, clip needs {n}")
        return [
            {"key": f"{path.stem}:{s}", "video": video[s : s + n], "actions": actions[s : s + n]}
            for s in range(0, len(video) - n + 1, n)
        ]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for ep in self.episodes:
            try:
                yield from self.clips(ep)
            except CorruptFileError as err:
                self._skip(err)
