"""Conceptual 12M as written by img2dataset: webdataset tar shards, streamed.

img2dataset's ``--output_format webdataset`` writes, per shard, ``00000.tar`` holding for each
sample ``{key}.jpg`` (or ``.webp``/``.png``), ``{key}.txt`` (the caption) and ``{key}.json``
(url, caption, key, status, sizes, ...), plus ``00000.parquet`` and ``00000_stats.json`` beside
it. Samples are grouped the way webdataset groups them: consecutive members sharing the part of
the file name before its first dot. Shards are read sequentially with :mod:`tarfile` streaming
(``r|*``), so memory stays flat and compressed shards (``.tar.gz``) work too.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unmask.data.errors import CorruptFileError, DatasetLayoutError, OnError, SkipsCorruptFiles
from unmask.data.transforms import center_crop_arr, load_rgb

__all__ = ["CC12M", "LAYOUT", "iter_tar_samples", "IMAGE_EXTS"]

IMAGE_EXTS = ("jpg", "jpeg", "webp", "png")
LAYOUT = """
<root>/
  00000.tar            webdataset shard: 000000000.jpg .txt .json, 000000001.jpg ...
  00000.parquet        (optional, img2dataset metadata)
  00000_stats.json     (optional, img2dataset stats: "successes" = samples in the shard)
  00001.tar ...
"""
_NAME = "CC12M (img2dataset webdataset)"


def _split_name(name: str) -> tuple[str, str]:
    """webdataset's key/extension split: key = path up to the first dot of the basename."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext.lower() if dot else "")


def iter_tar_samples(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream ``(key, {extension: bytes})`` groups from one tar shard.

    Raises:
        CorruptFileError: the archive itself is unreadable or truncated (after yielding every
            sample read before the damage).
    """
    path = Path(path)
    key: str | None = None
    group: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = _split_name(member.name)
                if k.rsplit("/", 1)[-1].startswith("."):  # hidden files, as webdataset does
                    continue
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if key is not None and k != key:
                    yield key, group
                    group = {}
                key = k
                group[ext] = data
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        if key is not None and group:
            yield key, group
        raise CorruptFileError(path, f"unreadable tar archive ({type(e).__name__}: {e})") from None
    if key is not None:
        yield key, group


class CC12M(SkipsCorruptFiles):
    """Image–caption pairs streamed from img2dataset webdataset shards.

    Args:
        root: a folder of ``*.tar`` shards, or an explicit sequence of shard paths.
        image_size: ADM center-crop size; None keeps the decoded image.
        on_error: ``"skip"`` (record ``shard.tar:key`` or the shard) or ``"raise"``.

    Items: ``{"key": "<shard>:<key>", "image": uint8 [S, S, 3], "caption": str, "meta": dict}``.
    Iterable only (shards are streams); :meth:`count_hint` gives the expected number of samples.
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        image_size: int | None = 256,
        on_error: OnError = "skip",
    ):
        self._init_skips(on_error)
        self.image_size = image_size
        if isinstance(root, (str, Path)):
            root = Path(root)
            if not root.is_dir():
                raise DatasetLayoutError(_NAME, root, "missing shard folder", LAYOUT)
            shards = sorted(
                p for p in root.iterdir() if p.name.endswith((".tar", ".tar.gz", ".tgz"))
            )
            if not shards:
                raise DatasetLayoutError(_NAME, root, "no .tar shards", LAYOUT)
        else:
            shards = [Path(p) for p in root]
            missing = [p for p in shards if not p.is_file()]
            if missing:
                raise DatasetLayoutError(_NAME, missing[0], "missing shard", LAYOUT)
        self.shards: list[Path] = shards

    def count_hint(self) -> int:
        """Expected number of samples: img2dataset's ``*_stats.json`` "successes" where present,
        else the number of image members found by scanning each shard's headers."""
        total = 0
        for shard in self.shards:
            stats = shard.with_name(shard.name.split(".")[0] + "_stats.json")
            if stats.is_file():
                try:
                    total += int(json.loads(stats.read_text())["successes"])
                    continue
                except (ValueError, KeyError, TypeError):
                    pass
            try:
                with tarfile.open(shard) as tar:
                    total += sum(_split_name(m.name)[1] in IMAGE_EXTS for m in tar if m.isfile())
            except (tarfile.TarError, EOFError, OSError):
                continue
        return total

    def _decode(self, shard: Path, key: str, group: dict[str, bytes]) -> dict[str, Any]:
        name = f"{shard.name}:{key}"
        ext = next((e for e in IMAGE_EXTS if e in group), None)
        if ext is None:
            raise CorruptFileError(name, f"sample has no image (members: {sorted(group)})")
        img = load_rgb(group[ext], name=f"{name}.{ext}")
        arr = center_crop_arr(img, self.image_size) if self.image_size else np.array(img)
        meta: dict[str, Any] = {}
        if "json" in group:
            try:
                meta = json.loads(group["json"])
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise CorruptFileError(f"{name}.json", f"bad json ({e})") from None
        if "txt" in group:
            caption = group["txt"].decode("utf-8", errors="replace").strip()
        else:
            caption = str(meta.get("caption") or "").strip()
        return {"key": name, "image": arr, "caption": caption, "meta": meta}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for shard in self.shards:
            samples = iter_tar_samples(shard)
            while True:
                try:
                    key, group = next(samples)
                except StopIteration:
                    break
                except CorruptFileError as err:  # the rest of this shard is lost
                    self._skip(err)
                    break
                try:
                    yield self._decode(shard, key, group)
                except CorruptFileError as err:
                    self._skip(err)
