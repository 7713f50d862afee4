"""``python -m unmask.stages joint.tokenize``: read the (image, mask) pairs — the embedded
Fashion-MNIST pairs (:class:`~unmask.data.seg_fmnist.SegFashionMNIST`) or Cityscapes with DI's 8
categories (:class:`~unmask.data.cityscapes.Cityscapes`) — fit or load the image tokenizer and
store image tokens, mask classes and the raw test images → ``tokens/{tokens.npz, meta.json,
vq.pt}``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from unmask import pretokenized as tp
from unmask.data import cityscapes, fashion_mnist, seg_fmnist
from unmask.joint.params import TASK_TAG, DataSection, JointParams
from unmask.runtime import write_timings
from unmask.stages import stage

__all__ = ["run_tokenize"]


def _load_pairs(d: DataSection, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    if d.kind == "seg_fmnist":
        kw: dict[str, Any] = {"threshold": d.threshold, "mask_size": tuple(d.mask_size)}
        ds = seg_fmnist.SegFashionMNIST.from_default(split, d.root, **kw)
        images, masks, _ = ds.arrays()
        return images[:limit], masks[:limit]
    ds = cityscapes.Cityscapes(str(d.root), split, image_size=d.image_size,
                               mask_size=tuple(d.mask_size))
    images, masks = [], []
    for i, item in enumerate(tqdm(ds, desc=f"read {split}", total=len(ds))):
        if limit is not None and i >= limit:
            break
        images.append(item["image"])
        masks.append(item["mask"])
    return np.stack(images), np.stack(masks)


def _num_classes(d: DataSection) -> int:
    return seg_fmnist.NUM_MASK_CLASSES if d.kind == "seg_fmnist" else cityscapes.NUM_CATEGORIES


def _class_names(d: DataSection) -> list[str]:
    if d.kind == "cityscapes":
        return list(cityscapes.CATEGORY_NAMES)
    return ["background", *fashion_mnist.CLASS_NAMES]


@stage("joint.tokenize", params=JointParams)
def run_tokenize(p: JointParams) -> dict[str, Any]:
    """Read the (image, mask) pairs, fit or load the image tokenizer, store the tokens."""
    t0 = time.perf_counter()
    train_split = "train"
    tr_img, tr_mask = _load_pairs(p.data, train_split, p.data.max_train)
    te_img, te_mask = _load_pairs(p.data, p.data.test_split, p.data.max_test)
    tok, tok_meta = tp.fit_tokenizer(p.tokenizer, tr_img, tp.TOKENS)
    kw = {} if p.tokenizer.kind == "pixel" else {"batch_size": p.tokenizer.batch_size}
    tr_tok, te_tok = tok.encode(tr_img, **kw), tok.encode(te_img, **kw)
    meta = {"tokenizer": tok_meta, "image_vocab": int(tok.vocab_size),
            "image_shape": list(tr_tok.shape[1:]), "mask_shape": list(tr_mask.shape[1:]),
            "num_classes": _num_classes(p.data), "class_names": _class_names(p.data),
            "counts": {"train": len(tr_tok), "test": len(te_tok)},
            "raw_shape": list(te_img.shape[1:])}
    seconds = round(time.perf_counter() - t0, 1)
    write_timings(tp.TIMINGS / "tokenize.json", {"seconds": seconds})
    tp.finish_tokenize(p, TASK_TAG, meta, train_image=tr_tok.numpy().astype(np.int32),
                           train_mask=tr_mask, test_image=te_tok.numpy().astype(np.int32),
                           test_mask=te_mask, test_raw=te_img)
    print(f"tokenize: {meta['counts']} pairs, image tokens {meta['image_shape']} (V = "
          f"{meta['image_vocab']}), masks {meta['mask_shape']} (C = {meta['num_classes']}), "
          f"{seconds}s → {tp.TOKENS}")
    return meta
