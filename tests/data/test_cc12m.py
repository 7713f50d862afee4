"""CC12M loader on tiny img2dataset-style webdataset shards."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmask.data.cc12m import CC12M, iter_tar_samples
from unmask.data.errors import CorruptFileError, DatasetLayoutError


def _jpeg_bytes(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (20, 36, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _shard(path: Path, shard: int, n: int, corrupt: int | None = None) -> list[str]:
    keys = []
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            key = f"{shard:05d}{i:04d}"
            keys.append(key)
            caption = f"caption {shard}-{i}"
            meta = {
                "url": f"http://x/{key}.jpg",
                "caption": caption,
                "key": key,
                "status": "success",
            }
            img = b"\xff\xd8\xffnot really a jpeg" if i == corrupt else _jpeg_bytes(10 * shard + i)
            _add(tar, f"{key}.jpg", img)
            _add(tar, f"{key}.txt", caption.encode())
            _add(tar, f"{key}.json", json.dumps(meta).encode())
    path.with_name(f"{shard:05d}_stats.json").write_text(json.dumps({"count": n, "successes": n}))
    return keys


def test_streams_image_caption_pairs_in_order(tmp_path: Path) -> None:
    k0 = _shard(tmp_path / "00000.tar", 0, 3)
    k1 = _shard(tmp_path / "00001.tar", 1, 2)
    ds = CC12M(tmp_path, image_size=16)
    items = list(ds)
    assert [it["key"] for it in items] == [
        f"0000{s}.tar:{k}" for s, ks in ((0, k0), (1, k1)) for k in ks
    ]
    assert items[4]["caption"] == "caption 1-1" and items[4]["meta"]["key"] == k1[1]
    assert items[0]["image"].shape == (16, 16, 3)
    assert ds.count_hint() == 5 and ds.num_skipped == 0


def test_grouping_matches_webdataset(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    _shard(tmp_path / "00000.tar", 0, 3)
    ours = [(k, sorted(g)) for k, g in iter_tar_samples(tmp_path / "00000.tar")]
    theirs = [
        (s["__key__"], sorted(k for k in s if not k.startswith("__")))
        for s in wds.WebDataset(str(tmp_path / "00000.tar"), shardshuffle=False)
    ]
    assert ours == theirs


def test_corrupt_image_and_truncated_shard_are_skipped_by_name(tmp_path: Path) -> None:
    _shard(tmp_path / "00000.tar", 0, 3, corrupt=1)
    _shard(tmp_path / "00001.tar", 1, 3)
    with tarfile.open(tmp_path / "00001.tar") as tar:
        cut = tar.getmember("000010001.jpg").offset_data + 100  # inside sample 1's image
    data = (tmp_path / "00001.tar").read_bytes()
    (tmp_path / "00001.tar").write_bytes(data[:cut])
    ds = CC12M(tmp_path, image_size=None)
    keys = [it["key"] for it in ds]
    assert keys == ["00000.tar:000000000", "00000.tar:000000002", "00001.tar:000010000"]
    assert [s.path for s in ds.skipped] == ["00000.tar:000000001.jpg", str(tmp_path / "00001.tar")]
    with pytest.raises(CorruptFileError, match="000000001.jpg"):
        list(CC12M(tmp_path, on_error="raise"))


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="no .tar shards") as e:
        CC12M(tmp_path)
    assert "00000_stats.json" in str(e.value)
    with pytest.raises(DatasetLayoutError, match="missing shard"):
        CC12M([tmp_path / "00009.tar"])
