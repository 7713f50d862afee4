"""DMLab loader on tiny TECO-format episode .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unmask.data.dmlab import DMLab
from unmask.data.errors import CorruptFileError, DatasetLayoutError


def _episode(path: Path, t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (t, 8, 8, 3), dtype=np.uint8)
    actions = rng.integers(0, 6, (t,), dtype=np.int32)
    np.savez_compressed(path, video=video, actions=actions)
    return video, actions


def test_episodes_cut_into_clips_with_actions(tmp_path: Path) -> None:
    v0, a0 = _episode(tmp_path / "train" / "0.npz", 10, 0)
    _episode(tmp_path / "train" / "1.npz", 8, 1)
    clips = list(DMLab(tmp_path, "train", clip_length=4))
    assert [c["key"] for c in clips] == ["0:0", "0:4", "1:0", "1:4"]
    np.testing.assert_array_equal(clips[1]["video"], v0[4:8])
    np.testing.assert_array_equal(clips[1]["actions"], a0[4:8])
    whole = list(DMLab(tmp_path, "train"))
    assert [c["video"].shape[0] for c in whole] == [10, 8]


def test_corrupt_inconsistent_and_short_episodes_are_skipped(tmp_path: Path) -> None:
    _episode(tmp_path / "test" / "a.npz", 6, 0)
    (tmp_path / "test" / "b.npz").write_bytes(b"PK\x03\x04 truncated")
    np.savez(
        tmp_path / "test" / "c.npz", video=np.zeros((5, 8, 8, 3), np.uint8), actions=np.zeros(4)
    )
    np.savez(tmp_path / "test" / "d.npz", frames=np.zeros((5, 8, 8, 3), np.uint8))
    _episode(tmp_path / "test" / "e.npz", 3, 1)
    ds = DMLab(tmp_path, "test", clip_length=4)
    assert [c["key"] for c in ds] == ["a:0"]
    assert [Path(s.path).name for s in ds.skipped] == ["b.npz", "c.npz", "d.npz", "e.npz"]
    assert "4 actions for 5 frames" in ds.skipped[1].reason
    assert "clip needs 4" in ds.skipped[3].reason
    with pytest.raises(CorruptFileError, match="b.npz"):
        list(DMLab(tmp_path, "test", on_error="raise"))


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="train/ folder") as e:
        DMLab(tmp_path)
    assert "actions int [T]" in str(e.value)
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetLayoutError, match="no .npz episodes"):
        DMLab(tmp_path)
