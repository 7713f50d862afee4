"""Loader error types: messages, skip bookkeeping, pickling across processes."""

from __future__ import annotations

import pickle

import pytest

from unmask.data.errors import (
    CorruptFileError,
    DatasetLayoutError,
    SkipsCorruptFiles,
    VideoTooShortError,
    require_dir,
)


def test_layout_error_message_and_pickling(tmp_path) -> None:
    with pytest.raises(DatasetLayoutError) as e:
        require_dir("Toy", tmp_path / "x", "<root>/\n  a/b.txt\n")
    msg = str(e.value)
    assert msg.startswith(f"Toy: missing directory at {tmp_path / 'x'}")
    assert msg.endswith("Expected layout:\n<root>/\n  a/b.txt")
    assert isinstance(e.value, FileNotFoundError)
    again = pickle.loads(pickle.dumps(e.value))
    assert str(again) == msg and again.path == tmp_path / "x"
    v = pickle.loads(pickle.dumps(VideoTooShortError("a.mp4", "3 frames")))
    assert isinstance(v, VideoTooShortError) and str(v) == "a.mp4: 3 frames"


def test_skip_policy() -> None:
    class Loader(SkipsCorruptFiles):
        def __init__(self, on_error):
            self._init_skips(on_error)

        def load(self, x: int) -> int:
            if x % 2:
                raise CorruptFileError(f"f{x}", "odd")
            return x

    lenient = Loader("skip")
    assert list(lenient._iter_skipping(range(5), lenient.load)) == [0, 2, 4]
    assert lenient.num_skipped == 2 and lenient.skipped[1].path == "f3"
    strict = Loader("raise")
    with pytest.raises(CorruptFileError, match="f1: odd"):
        list(strict._iter_skipping(range(5), strict.load))
    with pytest.raises(ValueError, match="on_error"):
        Loader("ignore")
