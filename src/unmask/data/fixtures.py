"""Tiny datasets and checkpoints in the real on-disk formats, for tests and smoke runs.

Each writer produces a few random images in exactly the layout the loader of
:mod:`unmask.data` reads (so a pipeline can be run end to end with its data path pointed at
the fixture), optionally with corrupt files that the loaders must skip by name:

* :func:`write_imagenet`: ``train/<wnid>/<wnid>_<k>.JPEG`` (ILSVRC-2012 train folders);
* :func:`write_coco`: ``{split}2014/COCO_{split}2014_<id>.jpg`` and
  ``annotations/captions_{split}2014.json``;
* :func:`write_cc12m`: img2dataset webdataset shards ``<shard>.tar`` (``.jpg``/``.txt``/``.json``)
  with ``<shard>_stats.json``;
* :func:`write_cifar10`: ``cifar-10-batches-py/`` pickle batches + ``batches.meta``;
* :func:`write_faceforensics`: ``original_sequences/youtube/<compression>/videos/NNN.mp4``
  (lossless h264), optionally with a video shorter than a clip, one that is not a video and one
  whose frame data is damaged (ffmpeg opens it and fails part-way);
* :func:`write_dmlab`: TECO ``<split>/<episode>.npz`` (``video``, ``actions``), optionally with
  a short, a truncated and a damaged episode;
* :func:`write_owt`: OpenWebText as ``*.txt`` documents plus an ``urlsf_subset*_data.xz`` tar
  of documents, optionally with empty documents and a file that is not UTF-8;
* :func:`write_random_vqmodel`: a randomly initialised diffusers ``VQModel`` folder with
  SD-VQ-F8's structure (4 levels → f = 8) at tiny widths (SD-VQ-F8 cannot be downloaded).

Running a pipeline on them end to end: :mod:`unmask.scratch`.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "write_imagenet",
    "write_coco",
    "write_cc12m",
    "write_cifar10",
    "write_faceforensics",
    "write_dmlab",
    "write_owt",
    "write_random_vqmodel",
    "CORRUPT_JPEG",
    "WNIDS",
    "CIFAR10_NAMES",
]

CORRUPT_JPEG = b"\xff\xd8\xffnot really a jpeg"
WNIDS = ("n01440764", "n01443537", "n02119789")
CIFAR10_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_WORDS = ("a", "red", "dog", "cat", "bus", "on", "the", "couch", "street", "two", "small", "blue")


def _image(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A smooth random RGB image (a blurred random field: tokenizers see structure)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, size[0] // 8), max(2, size[1] // 8), 3), dtype=np.uint8)
    return np.array(Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR))


def _jpeg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(_WORDS, size=int(rng.integers(3, 7)))).capitalize() + "."


def write_imagenet(
    root: str | Path,
    per_class: int = 4,
    size: tuple[int, int] = (40, 48),
    corrupt: int = 0,
    wnids: tuple[str, ...] = WNIDS,
) -> Path:
    """ILSVRC-2012 train folders with ``per_class`` JPEGs per synset; the last ``corrupt`` files
    of the first synset are corrupt. Returns ``root``."""
    root = Path(root)
    for c, w in enumerate(wnids):
        d = root / "train" / w
        d.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            bad = c == 0 and j >= per_class - corrupt
            data = CORRUPT_JPEG if bad else _jpeg_bytes(_image(100 * c + j, size))
            (d / f"{w}_{j + 1}.JPEG").write_bytes(data)
    return root


def write_coco(
    root: str | Path,
    split: str = "train",
    n: int = 8,
    size: tuple[int, int] = (40, 48),
    corrupt: int = 0,
) -> Path:
    """COCO 2014 ``{split}2014/`` images with ``annotations/captions_{split}2014.json`` (2
    captions each); the last ``corrupt`` images are corrupt. Returns ``root``."""
    root = Path(root)
    (root / f"{split}2014").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k in range(n):
        image_id = 1000 + 7 * k
        name = f"COCO_{split}2014_{image_id:012d}.jpg"
        data = CORRUPT_JPEG if k >= n - corrupt else _jpeg_bytes(_image(k, size))
        (root / f"{split}2014" / name).write_bytes(data)
        images.append({"id": image_id, "file_name": name, "height": size[0], "width": size[1]})
        for _ in range(2):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "caption": _caption(rng)})
    data = {"info": {}, "licenses": [], "images": images, "annotations": anns}
    (root / "annotations" / f"captions_{split}2014.json").write_text(json.dumps(data))
    return root


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_cc12m(
    root: str | Path,
    shards: int = 2,
    per_shard: int = 4,
    size: tuple[int, int] = (40, 48),
    corrupt: int = 0,
) -> Path:
    """img2dataset webdataset shards ``00000.tar``… with ``.jpg``, ``.txt``, ``.json`` per sample
    and ``*_stats.json``; the last ``corrupt`` samples of shard 0 have corrupt JPEGs."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for s in range(shards):
        with tarfile.open(root / f"{s:05d}.tar", "w") as tar:
            for i in range(per_shard):
                key = f"{s:05d}{i:04d}"
                caption = _caption(rng)
                meta = {"url": f"http://example/{key}.jpg", "caption": caption, "key": key}
                bad = s == 0 and i >= per_shard - corrupt
                img = CORRUPT_JPEG if bad else _jpeg_bytes(_image(10 * s + i, size))
                _add(tar, f"{key}.jpg", img)
                _add(tar, f"{key}.txt", caption.encode())
                _add(tar, f"{key}.json", json.dumps({**meta, "status": "success"}).encode())
        stats = {"count": per_shard, "successes": per_shard}
        (root / f"{s:05d}_stats.json").write_text(json.dumps(stats))
    return root


def write_cifar10(root: str | Path, per_batch: int = 8, test: int = 8) -> Path:
    """``cifar-10-batches-py/`` with 5 training batches of ``per_batch`` images, a test batch
    and ``batches.meta``. Returns the ``cifar-10-batches-py`` folder."""
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)

    def batch(name: str, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        imgs = np.stack([_image(1000 * seed + i, (32, 32)) for i in range(n)])
        data = imgs.transpose(0, 3, 1, 2).reshape(n, 3072)  # channel planes, as CIFAR stores
        obj = {
            b"batch_label": name.encode(),
            b"labels": [int(x) for x in rng.integers(0, 10, n)],
            b"data": data,
            b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
        }
        (d / name).write_bytes(pickle.dumps(obj, protocol=2))

    for i in range(1, 6):
        batch(f"data_batch_{i}", per_batch, i)
    batch("test_batch", test, 0)
    meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return d


FACEFORENSICS_VIDEOS = "original_sequences/youtube/{compression}/videos"
NOT_A_VIDEO = b"\x00\x00\x00\x18ftypmp42 not a video"


def write_mp4(path: str | Path, frames: int, seed: int = 0, size: int = 32) -> Path:
    """``frames`` frames of a bright square moving right on a noisy background, lossless h264
    (``imageio-ffmpeg``'s ffmpeg), ``size``×``size`` pixels. Returns ``path``."""
    import imageio_ffmpeg  # why: optional video codec

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = imageio_ffmpeg.write_frames(str(path), (size, size), fps=25, codec="libx264",
                                    macro_block_size=16, quality=None,
                                    output_params=["-crf", "0"])
    w.send(None)
    rng = np.random.default_rng(seed)
    for i in range(frames):
        f = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        f[8:16, i % (size - 8) : i % (size - 8) + 8] = 230
        w.send(f.tobytes())
    w.close()
    return path


def _damage_mdat(path: Path) -> None:
    """Zero the middle half of the file's ``mdat`` box (the coded frames): the container stays
    readable, decoding fails part-way."""
    data = bytearray(path.read_bytes())
    i = data.find(b"mdat") - 4
    size = int.from_bytes(data[i:i + 4], "big")
    lo, hi = i + 8 + size // 4, i + 8 + 3 * size // 4
    data[lo:hi] = bytes(hi - lo)
    path.write_bytes(bytes(data))


def write_faceforensics(
    root: str | Path,
    videos: int = 3,
    frames: int = 34,
    size: int = 32,
    short: int = 0,
    short_frames: int = 8,
    not_video: int = 0,
    damaged: int = 0,
    compression: str = "c23",
) -> Path:
    """FaceForensics++ original sequences: ``videos`` good mp4s of ``frames`` frames
    (``000.mp4``…), then ``short`` videos of ``short_frames`` frames, ``not_video`` files that
    are not videos and ``damaged`` videos whose coded frames are zeroed (numbered on). Returns
    ``root``."""
    root = Path(root)
    d = root / FACEFORENSICS_VIDEOS.format(compression=compression)
    d.mkdir(parents=True, exist_ok=True)
    k = 0
    for kind, n in (("good", videos), ("short", short), ("junk", not_video), ("bad", damaged)):
        for _ in range(n):
            path = d / f"{k:03d}.mp4"
            if kind == "junk":
                path.write_bytes(NOT_A_VIDEO)
            else:
                write_mp4(path, short_frames if kind == "short" else frames, seed=k, size=size)
                if kind == "bad":
                    _damage_mdat(path)
            k += 1
    return root


def write_dmlab(
    root: str | Path,
    split: str = "train",
    episodes: int = 3,
    frames: int = 12,
    size: int = 8,
    short: int = 0,
    truncated: int = 0,
    damaged: int = 0,
) -> Path:
    """TECO DMLab ``<split>/<k>.npz`` episodes (``video`` uint8 [T, size, size, 3], ``actions``
    int [T], compressed): ``episodes`` good ones, then ``short`` of 2 frames, ``truncated``
    cut to half their bytes and ``damaged`` with their compressed data zeroed. Returns
    ``root``."""
    d = Path(root) / split
    d.mkdir(parents=True, exist_ok=True)
    k = 0
    for kind, n in (("good", episodes), ("short", short), ("cut", truncated), ("bad", damaged)):
        for _ in range(n):
            rng = np.random.default_rng(k)
            t = 2 if kind == "short" else frames
            path = d / f"{k}.npz"
            np.savez_compressed(path, video=rng.integers(0, 256, (t, size, size, 3), np.uint8),
                                actions=rng.integers(0, 6, (t,), np.int32))
            data = path.read_bytes()
            if kind == "cut":
                path.write_bytes(data[: len(data) // 2])
            elif kind == "bad":  # the zip directory intact, the deflated members zeroed
                b = bytearray(data)
                b[64: len(b) // 2] = bytes(len(b) // 2 - 64)
                path.write_bytes(bytes(b))
            k += 1
    return Path(root)


def write_owt(
    root: str | Path,
    docs: int = 6,
    tar_docs: int = 4,
    empty: int = 0,
    not_utf8: int = 0,
    words: int = 40,
) -> Path:
    """OpenWebText as its release stores it: ``urlsf_subset00-1_data.xz`` (an xz tar of
    ``tar_docs`` ``*.txt`` documents) beside ``docs`` plain ``doc_NNN.txt`` documents; then
    ``empty`` empty / whitespace-only documents (half in the tar, half as files) and
    ``not_utf8`` files that are not UTF-8. Returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def text() -> bytes:
        return (" ".join(rng.choice(_WORDS, size=words)).capitalize() + ".\n").encode()

    in_tar = empty // 2
    with tarfile.open(root / "urlsf_subset00-1_data.xz", "w:xz") as tar:
        for i in range(tar_docs + in_tar):
            _add(tar, f"openwebtext/{i:04d}-doc.txt", text() if i < tar_docs else b" \n")
    for i in range(docs):
        (root / f"doc_{i:03d}.txt").write_bytes(text())
    for i in range(empty - in_tar):
        (root / f"empty_{i:03d}.txt").write_bytes(b"" if i % 2 == 0 else b"\n\t \n")
    for i in range(not_utf8):
        (root / f"latin1_{i:03d}.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    return root


def write_random_vqmodel(path: str | Path, num_codes: int = 16384, seed: int = 0) -> Path:
    """A randomly initialised diffusers ``VQModel`` with SD-VQ-F8's structure (4 levels → f = 8,
    ``num_codes`` codes of dim 4) at tiny widths, saved with ``save_pretrained``."""
    import torch  # why: torch is slow to import
    from diffusers import VQModel  # why: diffusers is heavy; its checkpoints only

    torch.manual_seed(seed)
    model = VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        num_vq_embeddings=num_codes,
        norm_num_groups=4,
        sample_size=32,
    )
    with torch.no_grad():  # codes on the scale of the encoder outputs: many in use
        model.quantize.embedding.weight.normal_(0, 0.5)
    model.save_pretrained(path)
    return Path(path)
