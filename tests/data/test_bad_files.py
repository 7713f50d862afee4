"""One bad file never kills a stage (issue 17): short, unopenable and damaged videos, truncated
and damaged DMLab episodes, empty and non-UTF-8 documents are skipped and recorded by the
loaders and by the stages that use them; a folder with nothing usable is one clear error
naming it. All fixtures are in the real on-disk formats (:mod:`unmask.data.fixtures`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from unmask.data.dmlab import DMLab
from unmask.data.errors import CorruptFileError, DatasetLayoutError
from unmask.data.faceforensics import FaceForensics, iter_video_frames
from unmask.data.fixtures import (
    FACEFORENSICS_VIDEOS,
    write_dmlab,
    write_faceforensics,
    write_mp4,
    write_owt,
)
from unmask.data.owt import OpenWebText
from unmask.data.text_corpus import TextCorpus

REPO = Path(__file__).resolve().parents[2]
VIDEOS = FACEFORENSICS_VIDEOS.format(compression="c23")


@pytest.fixture(scope="module")
def ff_root(tmp_path_factory) -> Path:
    """000-002: 34 good frames (2 clips of 16 each); 003: 8 frames; 004: not a video;
    005: coded frames zeroed (opens, fails to decode part-way)."""
    return write_faceforensics(tmp_path_factory.mktemp("ff"), videos=3, frames=34, short=1,
                               not_video=1, damaged=1)


def _names(skipped) -> list[str]:
    return [Path(s.path if hasattr(s, "path") else s["path"]).name for s in skipped]


def test_damaged_video_is_a_decode_error_not_silent_garbage(ff_root: Path) -> None:
    good = list(iter_video_frames(ff_root / VIDEOS / "000.mp4"))
    assert len(good) == 34 and good[0].shape == (32, 32, 3)
    frames = []
    with pytest.raises(CorruptFileError, match=r"005.mp4: decode error after \d+ frames") as e:
        frames.extend(iter_video_frames(ff_root / VIDEOS / "005.mp4"))
    assert len(frames) < 34 and "\n" not in str(e.value)  # a one-line reason
    with pytest.raises(CorruptFileError, match=r"004.mp4: cannot open video") as e:
        list(iter_video_frames(ff_root / VIDEOS / "004.mp4"))
    assert "\n" not in str(e.value)


def test_faceforensics_skips_and_records_every_bad_video(ff_root: Path) -> None:
    ds = FaceForensics(ff_root, clip_length=16, size=16)
    keys = [c["key"] for c in ds]
    assert keys == ["000:0", "000:16", "001:0", "001:16", "002:0", "002:16"]
    assert _names(ds.skipped) == ["003.mp4", "004.mp4", "005.mp4"]
    reasons = [s.reason for s in ds.skipped]
    assert "8 frames, shorter than one clip (16 frames)" in reasons[0]
    assert reasons[1].startswith("cannot open video") and reasons[2].startswith("decode error")
    # a split: only its videos are read, and only its bad ones recorded
    part = FaceForensics(ff_root, clip_length=16, size=16)
    assert [c["key"] for c in part.iter_videos(part.videos[2:4])] == ["002:0", "002:16"]
    assert _names(part.skipped) == ["003.mp4"]
    with pytest.raises(CorruptFileError, match="005.mp4"):
        list(FaceForensics(ff_root, clip_length=16, size=16, on_error="raise")
             .iter_videos(part.videos[5:]))


def _video_tokenize(tmp_path: Path, monkeypatch, sets: dict) -> dict:
    """The video pipeline's tokenize stage (its own CLI and params.yaml), pixel tokens, in a
    scratch working directory."""
    from unmask import stages

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["video.tokenize", "--params", str(REPO / "pipelines" / "faceforensics" / "params.yaml")]
    base = {"tokenizer.kind": "pixel", "tokenizer.levels": 4, "tracking.enabled": False}
    for k, v in {**base, **sets}.items():
        argv += ["--set", f"{k}={v}"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return stages.main(argv)
    finally:
        torch.set_num_threads(threads)


def test_video_tokenize_stage_skips_and_records_bad_videos(tmp_path, monkeypatch):
    """The issue's case: a FaceForensics folder holding a video shorter than a clip (and an
    unopenable and a damaged one) no longer makes ``tokenize`` exit: the clips of the good
    videos are tokenized and the bad files are listed in the stage's tokens/meta.json."""
    root = write_faceforensics(tmp_path / "ff", videos=3, frames=34, short=1, not_video=1,
                               damaged=1)
    write_mp4(root / VIDEOS / "006.mp4", 34, seed=6)
    # test_fraction 0.3 of 7 videos: test = 005 (damaged), 006; train = 000-004
    meta = _video_tokenize(tmp_path, monkeypatch, {
        "data.root": root, "data.size": 16, "data.test_fraction": 0.3})
    assert meta["counts"] == {"train": 6, "test": 2}
    saved = json.loads((tmp_path / "work" / "tokens" / "meta.json").read_text())
    assert saved["num_skipped"] == 3
    assert _names(saved["skipped"]) == ["003.mp4", "004.mp4", "005.mp4"]
    assert "shorter than one clip" in saved["skipped"][0]["reason"]
    with np.load(tmp_path / "work" / "tokens" / "tokens.npz") as z:
        assert z["train"].shape[:2] == (6, 16) and z["test"].shape[:2] == (2, 16)


def test_video_tokenize_with_no_usable_video_names_the_folder(tmp_path, monkeypatch, capsys):
    """Zero usable clips is still an error: one line naming the folder and why (exit 2)."""
    root = write_faceforensics(tmp_path / "ff", videos=0, short=2, not_video=1)
    with pytest.raises(SystemExit) as e:
        _video_tokenize(tmp_path, monkeypatch, {"data.root": root, "data.size": 16})
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r"^error: data: no train clips of 16 frames found under .*ff "
                     r"\(3 files skipped, e\.g\. .*000\.mp4: video has 8 frames", err), err


def test_dmlab_truncated_damaged_and_short_episodes(tmp_path: Path) -> None:
    root = write_dmlab(tmp_path, "train", episodes=2, frames=12, short=1, truncated=1,
                       damaged=1)
    ds = DMLab(root, "train", clip_length=4)
    assert [c["key"] for c in ds] == ["0:0", "0:4", "0:8", "1:0", "1:4", "1:8"]
    assert _names(ds.skipped) == ["2.npz", "3.npz", "4.npz"]
    assert "episode has 2 frames" in ds.skipped[0].reason
    assert all(r.reason.startswith("unreadable npz") for r in ds.skipped[1:])


def test_dmlab_stage_records_skips_and_errors_when_nothing_is_usable(tmp_path, monkeypatch):
    from unmask.video.clips import load_clips
    from unmask.video.params import DataSection

    root = write_dmlab(tmp_path / "dm", "train", episodes=2, frames=8, truncated=1)
    write_dmlab(tmp_path / "dm", "test", episodes=0, short=1, damaged=1)
    skipped: list[dict[str, str]] = []
    d = DataSection(kind="dmlab", root=str(root), frames=4)
    assert load_clips(d, "train", skipped).shape == (4, 4, 8, 8, 3)
    assert _names(skipped) == ["2.npz"]
    with pytest.raises(ValueError, match=r"no test clips .* under .*dm \(2 files skipped"):
        load_clips(d, "test", skipped)


def test_owt_skips_and_records_empty_and_undecodable_documents(tmp_path: Path) -> None:
    root = write_owt(tmp_path, docs=3, tar_docs=2, empty=4, not_utf8=1)
    ds = OpenWebText(root)
    keys = [d["key"] for d in ds]
    assert keys == ["doc_000.txt", "doc_001.txt", "doc_002.txt",
                    "urlsf_subset00-1_data.xz:openwebtext/0000-doc.txt",
                    "urlsf_subset00-1_data.xz:openwebtext/0001-doc.txt"]
    reasons = {Path(s.path).name: s.reason for s in ds.skipped}
    assert reasons == {"empty_000.txt": "empty document", "empty_001.txt": "empty document",
                       "0002-doc.txt": "empty document", "0003-doc.txt": "empty document",
                       "latin1_000.txt": reasons["latin1_000.txt"]}
    assert reasons["latin1_000.txt"].startswith("not UTF-8")
    # the MDLM split counts usable documents only; its counting pass records nothing twice
    train = OpenWebText(root, "train", valid_docs=2)
    assert [d["key"] for d in train] == keys[:3]
    valid = OpenWebText(root, "valid", valid_docs=2)
    assert [d["key"] for d in valid] == keys[3:]
    assert sorted(map(str, valid.skipped)) == sorted(map(str, ds.skipped))


def test_owt_too_small_for_the_valid_split_names_the_key(tmp_path: Path) -> None:
    root = write_owt(tmp_path / "owt", docs=2, tar_docs=1, empty=2)
    with pytest.raises(ValueError, match=r"3 usable documents, but the last valid_docs = 100000 "
                                         r".*lower valid_docs \(params: data.valid_docs\)"):
        next(iter(OpenWebText(root, "train")))
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.txt").write_text("  \n")
    (tmp_path / "blank" / "b.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(DatasetLayoutError, match=r"no usable document \(2 skipped.* at .*blank"):
        list(OpenWebText(tmp_path / "blank"))
    with pytest.raises(DatasetLayoutError, match="no usable document"):
        list(OpenWebText(tmp_path / "blank", "valid", valid_docs=1))


def test_text_corpus_records_empty_files(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "fortunes").write_text("One.\n%\nTwo.\n")
    (tmp_path / "f" / "blank").write_text("%\n\n%\n")
    ds = TextCorpus("fortunes", tmp_path / "f")
    assert [d["key"] for d in ds] == ["fortunes:0", "fortunes:1"]
    assert [(Path(s.path).name, s.reason) for s in ds.skipped] == [
        ("blank", "no fortunes in the file")]
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "empty.rst.txt").write_text("\n \n")
    with pytest.raises(DatasetLayoutError, match=r"no usable document \(1 skipped; e.g. "
                                                 r".*empty.rst.txt: empty document"):
        list(TextCorpus("python-doc", tmp_path / "p"))


def test_prime_prepare_owt_records_skips_and_uses_valid_docs(tmp_path: Path) -> None:
    """pipelines/owt's prepare stage on the fixture: ``data.valid_docs`` sets MDLM's held-out
    tail (default 100 000, MDM-Prime App. A.4.3), bad documents are listed in meta.json."""
    from unmask.prime.config import DataSection
    from unmask.prime.data import prepare

    assert DataSection().valid_docs == 100_000
    root = write_owt(tmp_path / "owt", docs=6, tar_docs=2, empty=2, not_utf8=1, words=60)
    cfg = DataSection(kind="owt", root=str(root), block_size=32, valid_docs=2)
    meta = prepare(cfg, tmp_path / "data")
    assert meta["counts"]["train"] > meta["counts"]["valid"] > 0
    assert meta["num_skipped"] == 3
    assert {Path(s["path"]).name for s in meta["skipped"]} == {
        "empty_000.txt", "latin1_000.txt", "0002-doc.txt"}
    saved = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert saved["data"]["valid_docs"] == 2 and saved["skipped"] == meta["skipped"]
    with pytest.raises(ValueError, match=r"data.valid_docs"):
        prepare(DataSection(kind="owt", root=str(root), block_size=32), tmp_path / "d2")


def test_owt_saved_dataset_skips_empty_rows(tmp_path: Path) -> None:
    """A ``save_to_disk`` dataset (Arrow stream + state.json) with empty and null texts."""
    import pyarrow as pa

    root = tmp_path / "ds"
    root.mkdir()
    table = pa.table({"text": ["first doc", "", None, "  \n", "last doc"]})
    with pa.OSFile(str(root / "data-00000-of-00001.arrow"), "wb") as sink, \
            pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (root / "state.json").write_text(json.dumps(
        {"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    ds = OpenWebText(root, use_datasets=False)
    assert [d["text"] for d in ds] == ["first doc", "last doc"]
    assert [(Path(s.path).name, s.reason) for s in ds.skipped] == [
        ("ds[1]", "empty document"), ("ds[2]", "empty document"), ("ds[3]", "empty document")]
