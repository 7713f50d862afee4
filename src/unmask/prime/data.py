"""Data preparation for the MDM-Prime pipelines: token shards (:mod:`unmask.data.shards`)
``<out>/train`` and ``<out>/valid`` plus ``<out>/meta.json``.

* text — the embedded Debian corpus (:class:`~unmask.data.text_corpus.TextCorpus`) or
  OpenWebText (:class:`~unmask.data.owt.OpenWebText`), GPT-2 BPE in MDLM's wrapped blocks
  (:func:`unmask.tokenizers.bpe.encode_and_pack`); optionally a compact relabelling of the ids
  that occur (``meta["id_map"]`` maps back to GPT-2 ids for decoding). Unreadable files and
  empty documents are skipped and listed in ``meta["skipped"]``.
* pixels — Fashion-MNIST (Debian package), CIFAR-10 (python pickles), ImageNet-32 (the
  downsampled-ImageNet npz batches, read by :func:`read_imagenet32`), each pixel value one
  token (:class:`~unmask.tokenizers.PixelTokenizer`), labels kept.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unmask.data import fashion_mnist
from unmask.data.cifar10 import CIFAR10
from unmask.data.errors import DatasetLayoutError
from unmask.data.owt import OpenWebText
from unmask.data.shards import ShardWriter, TokenShards
from unmask.data.text_corpus import TextCorpus
from unmask.prime.config import DataSection
from unmask.tokenizers.bpe import GPT2BPE
from unmask.tokenizers.pixel import PixelTokenizer

__all__ = ["DATA", "prepare", "load_split", "read_imagenet32", "IMAGENET32_LAYOUT"]

DATA = Path("data")  # the prepared shards in a pipeline folder (the stages run there)

IMAGENET32_LAYOUT = """
<root>/ (Chrabaszcz et al. 2017, "Imagenet32_train_npz.zip" + "Imagenet32_val_npz.zip" unpacked)
  train_data_batch_1.npz .. train_data_batch_10.npz   {"data": uint8 [n, 3072] (R, G, B planes),
                                                        "labels": int [n] (1-based)}
  val_data.npz                                         same keys
"""

_CHUNK = 4096


def _writer(path: Path, count: int, shape: tuple[int, ...], vocab: int, tokenizer: dict,
            source: dict, labels: bool, meta: dict) -> ShardWriter:
    return ShardWriter(path, count=count, shape=shape, vocab_size=vocab, tokenizer=tokenizer,
                       source=source, labels=labels, meta=meta, resume=False)


def _take(it: Iterator[np.ndarray], cap: int | None) -> Iterator[np.ndarray]:
    for i, block in enumerate(it):
        if cap is not None and i >= cap:
            return
        yield block


# -- text ---------------------------------------------------------------------------------------
def _corpus(cfg: DataSection, split: str) -> Any:
    """The text corpus of ``split`` (skips unreadable files and empty documents, recording
    them in its ``skipped``)."""
    if cfg.kind == "text":
        return TextCorpus(cfg.source, root=cfg.root, split=split,
                          valid_fraction=cfg.valid_fraction)
    if cfg.root is None:
        raise ValueError("data.root must point at OpenWebText for data.kind = owt")
    return OpenWebText(cfg.root, split=split, valid_docs=cfg.valid_docs)


def _text_blocks(corpus: Any, cfg: DataSection, split: str, tok: Any) -> Iterator[np.ndarray]:
    cap = cfg.max_train if split == "train" else cfg.max_valid
    return _take(corpus.iter_blocks(tok, cfg.block_size), cap)


def _prepare_text(cfg: DataSection, out: Path) -> dict:
    tok = GPT2BPE()
    tmp = Path(tempfile.mkdtemp(prefix=".prime-blocks-", dir=out.parent))
    counts, seen = {}, np.zeros(tok.vocab_size, dtype=bool)
    skipped: dict[str, str] = {}  # path -> reason; both splits read every file: keep one each
    try:
        for split in ("train", "valid"):  # pass 1: stream blocks to a raw file, count them
            n = 0
            corpus = _corpus(cfg, split)
            with open(tmp / f"{split}.bin", "wb") as f:
                for block in _text_blocks(corpus, cfg, split, tok):
                    f.write(block.astype(np.int32).tobytes())
                    seen[block] = True
                    n += 1
            skipped.update((r.path, r.reason) for r in corpus.skipped)
            if n == 0:
                raise ValueError(f"data: the {split} split produced no {cfg.block_size}-token "
                                 "block (corpus too small?)")
            counts[split] = n
        id_map = np.flatnonzero(seen) if cfg.compact_vocab else None
        vocab = len(id_map) if id_map is not None else tok.vocab_size
        lut = None
        if id_map is not None:
            lut = np.full(tok.vocab_size, -1, dtype=np.int64)
            lut[id_map] = np.arange(len(id_map))
        tokenizer = {"identity": tok.identity + (",compact" if lut is not None else ""),
                     "hash": tok.hash}
        for split in ("train", "valid"):  # pass 2: shards
            raw = np.memmap(tmp / f"{split}.bin", dtype=np.int32, mode="r",
                            shape=(counts[split], cfg.block_size))
            with _writer(out / split, counts[split], (cfg.block_size,), vocab, tokenizer,
                         {"corpus": cfg.kind, "source": cfg.source, "split": split}, False,
                         {}) as w:
                for i in range(0, counts[split], _CHUNK):
                    chunk = np.asarray(raw[i:i + _CHUNK], dtype=np.int64)
                    w.write(lut[chunk] if lut is not None else chunk)
            del raw
    finally:
        for p in tmp.glob("*"):
            p.unlink()
        tmp.rmdir()
    return {"kind": "text", "vocab_size": vocab, "shape": [cfg.block_size], "num_classes": 0,
            "counts": counts, "id_map": id_map.tolist() if id_map is not None else None,
            "tokenizer": tok.identity, "num_skipped": len(skipped),
            "skipped": [{"path": p, "reason": r} for p, r in skipped.items()]}


# -- pixels -------------------------------------------------------------------------------------
def read_imagenet32(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Downsampled ImageNet 32×32 (npz batches, see :data:`IMAGENET32_LAYOUT`):
    ``(images uint8 [N, 32, 32, 3], labels int64 [N] in 0..999)``."""
    root = Path(root)
    names = (sorted(root.glob("train_data_batch_*.npz"), key=lambda p: int(p.stem.rsplit("_")[-1]))
             if split == "train" else [root / "val_data.npz"])
    if not names or not all(p.is_file() for p in names):
        raise DatasetLayoutError("ImageNet-32", root, f"missing {split} npz batches",
                                 IMAGENET32_LAYOUT)
    images, labels = [], []
    for p in names:
        with np.load(p) as z:
            images.append(z["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(z["labels"], dtype=np.int64) - 1)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _load_images(cfg: DataSection, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    if cfg.dataset == "fashion_mnist":
        images, labels = fashion_mnist.load("train" if split == "train" else "test",
                                            cfg.root or fashion_mnist.DEFAULT_ROOT)
        return images, labels.astype(np.int64), 10
    if cfg.root is None:
        raise ValueError(f"data.root must point at {cfg.dataset} for data.dataset = {cfg.dataset}")
    if cfg.dataset == "cifar10":
        ds = CIFAR10(cfg.root, "train" if split == "train" else "test")
        return ds.images, ds.labels.astype(np.int64), 10
    images, labels = read_imagenet32(cfg.root, split)
    return images, labels, 1000


def _prepare_pixels(cfg: DataSection, out: Path) -> dict:
    counts, shape, classes = {}, None, 0
    for split in ("train", "valid"):
        images, labels, classes = _load_images(cfg, split)
        cap = cfg.max_train if split == "train" else cfg.max_valid
        if cap is not None and cap < len(images):
            idx = np.random.default_rng(cfg.seed).permutation(len(images))[:cap]
            images, labels = images[np.sort(idx)], labels[np.sort(idx)]
        tok = PixelTokenizer(cfg.levels, cfg.size, channels=1 if images.ndim == 3 else 3)
        shape = tok.token_shape(images.shape[1:])
        counts[split] = len(images)
        with _writer(out / split, len(images), shape, tok.vocab_size,
                     {"identity": tok.identity, "hash": tok.hash},
                     {"dataset": cfg.dataset, "split": split}, True,
                     {"num_classes": classes}) as w:
            for i in range(0, len(images), _CHUNK):
                w.write(tok.encode(images[i:i + _CHUNK]), labels[i:i + _CHUNK])
    return {"kind": "pixels", "vocab_size": cfg.levels, "shape": list(shape),
            "num_classes": classes, "counts": counts, "id_map": None,
            "tokenizer": tok.identity, "channels": tok.channels}


def prepare(cfg: DataSection, out: str | Path) -> dict:
    """Write ``out/{train,valid}`` shards and ``out/meta.json``; returns the meta dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = _prepare_pixels(cfg, out) if cfg.kind == "pixels" else _prepare_text(cfg, out)
    meta["data"] = cfg.model_dump(mode="json")
    (out / "meta.json").write_text(json.dumps(meta) + "\n")
    return meta


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, torch.Tensor | None,
                                                          dict]:
    """(tokens (N, *shape) as a read-only numpy memmap, labels or None, meta): wrap the tokens
    in :class:`~unmask.prime.subtokens.SubTokenView` (training) or index rows of them."""
    data_dir = Path(data_dir)
    meta = json.loads((data_dir / "meta.json").read_text())
    shards = TokenShards(data_dir / split, verify=False)
    return shards.tokens, shards.labels_tensor(), meta
