"""CLIP score (Hessel et al. 2021) with open_clip from a local checkpoint.

For image I and caption c with CLIP embeddings E_I, E_c,

    CLIPScore(I, c) = w · max(cos(E_I, E_c), 0),    w = 100,

averaged over the pairs (the scale of torchmetrics' ``CLIPScore`` and of text-to-image papers'
tables; Hessel et al.'s w = 2.5 variant is the same number × 0.025). Which CLIP matters: the
architecture name and checkpoint hash are logged as params.

CLIP weights cannot be downloaded here. The score needs ``open_clip`` importable *and* a local
checkpoint file; otherwise it is reported *unavailable* with the reason.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unmask.metrics import MetricResult
from unmask.metrics.images import to_uint8_nchw
from unmask.metrics.inception import file_sha256

__all__ = ["CLIP_SCORE", "CLIP_SCORE_SCALE", "clip_score", "compute_clip_score"]

CLIP_SCORE = "clip_score"
CLIP_SCORE_SCALE = 100.0


def _unavailable_reason(checkpoint_path: str | os.PathLike[str] | None) -> str | None:
    if importlib.util.find_spec("open_clip") is None:
        return "open_clip is not installed (pip install open_clip_torch) — CLIP score needs it"
    if checkpoint_path is None:
        return "no CLIP checkpoint given (CLIP weights cannot be downloaded here)"
    if not Path(checkpoint_path).is_file():
        return f"CLIP checkpoint not found at {checkpoint_path}"
    return None


@torch.no_grad()
def clip_score(
    images: Any,
    texts: Sequence[str],
    checkpoint_path: str | os.PathLike[str] | None,
    *,
    model_name: str = "ViT-B-32",
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> MetricResult:
    """Mean CLIP score of uint8 ``images`` (``[N,H,W,3]`` or ``[N,3,H,W]``) and ``texts``.

    Uses ``open_clip.create_model_and_transforms(model_name, pretrained=checkpoint_path)`` and its
    own preprocessing (resize, centre crop, CLIP normalisation) and tokenizer.
    """

    x = to_uint8_nchw(images)
    if len(texts) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {len(texts)} texts")
    params: dict[str, Any] = {"num_samples": int(x.shape[0]), "model": model_name,
                              "scale": CLIP_SCORE_SCALE}
    reason = _unavailable_reason(checkpoint_path)
    if reason is not None:
        return MetricResult.unavailable(CLIP_SCORE, reason, **params)
    assert checkpoint_path is not None
    params["checkpoint_sha256"] = file_sha256(checkpoint_path)[:16]

    import open_clip  # why: optional: CLIP checkpoints only

    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=str(checkpoint_path), device=dev
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    scores = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size]
        pil = [Image.fromarray(np.ascontiguousarray(im.permute(1, 2, 0).numpy())) for im in chunk]
        img = torch.stack([preprocess(p) for p in pil]).to(dev)
        tok = tokenizer(list(texts[start : start + batch_size])).to(dev)
        e_i = torch.nn.functional.normalize(model.encode_image(img).float(), dim=-1)
        e_t = torch.nn.functional.normalize(model.encode_text(tok).float(), dim=-1)
        scores.append((CLIP_SCORE_SCALE * (e_i * e_t).sum(-1).clamp_min(0)).cpu())
    return MetricResult.ok(CLIP_SCORE, float(torch.cat(scores).mean()), **params)


#: the package-level name (``unmask.metrics.compute_clip_score``): ``unmask.metrics.clip_score`` is
#: this module
compute_clip_score = clip_score
