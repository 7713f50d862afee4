"""FID, KID, precision/recall and Inception Score through torch-fidelity, fully offline.

All four use torch-fidelity's own ``FeatureExtractorInceptionV3`` (``inception-v3-compat``): uint8
images, TF1-style bilinear resize to 299×299, ``x / 128 − 1``, the 2015-12-05 Inception-v3 — with
the weights from :mod:`unmask.metrics.inception` passed as ``feature_extractor_weights_path``.

- FID (Heusel et al. 2017): Fréchet distance between Gaussian fits of the 2048-d pool3 features,
  ‖μ_g − μ_r‖² + Tr(Σ_g + Σ_r − 2(Σ_gΣ_r)^{1/2}).
- KID (Bińkowski et al. 2018): unbiased MMD² with the cubic kernel k(x, y) = (xᵀy / d + 1)³ on
  the same features, averaged over ``kid_subsets`` random subsets of size min(1000, N, N_ref);
  ``kid_std`` is the standard deviation over subsets.
- Precision / recall (Kynkäänniemi et al. 2019, k = 3): the fraction of generated samples inside
  the union of real k-NN balls, and vice versa. Computed on the Inception pool3 features — as in
  the ADM/guided-diffusion evaluator that the image papers report — not on VGG-16 features
  (torch-fidelity's default for ``prc``, whose weights are not available offline). The feature set
  is logged as the param ``features``.
- Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) ‖ p(y))) over 10 splits, from the
  1008-way logits. Only with the verified standard weights file; otherwise reported unavailable.

Reference statistics are cached by torch-fidelity (``input2_cache_name``) under
``<cache>/fidelity``, keyed by :func:`reference_key` (dataset manifest hash, split, resolution):
the reference images go through Inception once and every later trial loads the cached
features/statistics (pass the key string as ``reference``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from unmask.metrics import MetricResult
from unmask.metrics.inception import InceptionWeights, cache_dir, resolve_inception_weights

__all__ = [
    "FID",
    "INCEPTION_SCORE",
    "INCEPTION_SCORE_STD",
    "KID",
    "KID_STD",
    "PRECISION",
    "RECALL",
    "UInt8Images",
    "cached_reference",
    "compute_fidelity",
    "reference_key",
    "to_uint8_nchw",
]

FID = "fid"
KID = "kid"
KID_STD = "kid_std"
PRECISION = "precision"
RECALL = "recall"
INCEPTION_SCORE = "inception_score"
INCEPTION_SCORE_STD = "inception_score_std"

#: requested metric group → result names
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "fid": (FID,),
    "kid": (KID, KID_STD),
    "pr": (PRECISION, RECALL),
    "prc": (PRECISION, RECALL),
    "is": (INCEPTION_SCORE, INCEPTION_SCORE_STD),
    "isc": (INCEPTION_SCORE, INCEPTION_SCORE_STD),
}
FEATURE_EXTRACTOR = "inception-v3-compat"
FEATURE_LAYER = "2048"
_FEATURES_TAG = "inception-v3-2015-12-05-pool3-2048"

Layout = Literal["auto", "nhwc", "nchw"]


def _as_uint8_tensor(images: Any) -> torch.Tensor:
    if torch.is_tensor(images):
        x = images.detach().cpu()
    else:
        arr = np.asarray(images)
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (got {x.dtype}); quantise to [0, 255] first")
    return x


def _channel_layout(shape: tuple[int, ...], layout: Layout) -> Literal["nhw", "nhwc", "nchw"]:
    """Which layout a uint8 image batch of ``shape`` is in (``nhw`` = grayscale without C)."""
    if len(shape) == 3:
        return "nhw"
    if len(shape) != 4:
        raise ValueError(f"images must be [N,H,W], [N,H,W,C] or [N,C,H,W]; got {shape}")
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if layout == "auto":
        if first and last:
            raise ValueError(f"ambiguous layout for shape {shape}: pass layout='nhwc' or 'nchw'")
        if not (first or last):
            raise ValueError(f"no channel dim of size 1 or 3 in shape {shape}")
        return "nchw" if first else "nhwc"
    channels = shape[1] if layout == "nchw" else shape[3]
    if channels not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got shape {shape} ({layout})")
    return layout


def _to_chw3(x: torch.Tensor, kind: str) -> torch.Tensor:
    """One image in layout ``kind`` (without N) → contiguous ``uint8 [3, H, W]``."""
    if kind == "nhw":
        x = x.unsqueeze(0)
    elif kind == "nhwc":
        x = x.permute(2, 0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.contiguous()


def to_uint8_nchw(images: Any, layout: Layout = "auto") -> torch.Tensor:
    """uint8 images → contiguous ``uint8 [N, 3, H, W]`` CPU tensor.

    Accepts numpy arrays or tensors shaped ``[N, H, W]`` (grayscale), ``[N, H, W, C]`` or
    ``[N, C, H, W]`` with C ∈ {1, 3}; grayscale is replicated to 3 channels. ``layout`` resolves
    the ambiguous case where both dim 1 and dim 3 could be channels. Non-uint8 input is refused:
    quantising is the caller's decision (FID is defined on 8-bit images).
    """
    x = _as_uint8_tensor(images)
    kind = _channel_layout(tuple(x.shape), layout)
    if kind == "nhw":
        x = x.unsqueeze(1)
    elif kind == "nhwc":
        x = x.permute(0, 3, 1, 2)
    if x.shape[0] == 0:
        raise ValueError("no images")
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x.contiguous()


class UInt8Images(Dataset):
    """Dataset view of a uint8 image batch yielding ``uint8 [3, H, W]`` (torch-fidelity's input).

    The batch is kept as given (no copy of the whole set); each item is permuted / replicated to
    three channels on access.
    """

    def __init__(self, images: Any, layout: Layout = "auto") -> None:
        self.images = _as_uint8_tensor(images)
        self.kind = _channel_layout(tuple(self.images.shape), layout)
        if self.images.shape[0] == 0:
            raise ValueError("no images")
        c_h_w = _to_chw3(self.images[0], self.kind).shape
        self.height, self.width = int(c_h_w[1]), int(c_h_w[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return _to_chw3(self.images[i], self.kind)


def _as_dataset(images: Any, layout: Layout) -> Dataset:
    """A torch Dataset yielding uint8 [3, H, W] is used as is; arrays are wrapped."""
    if isinstance(images, Dataset):
        first = images[0]
        if not (torch.is_tensor(first) and first.dtype == torch.uint8 and first.dim() == 3
                and first.shape[0] == 3):
            raise TypeError("a Dataset input must yield uint8 [3, H, W] tensors")
        return images
    return UInt8Images(images, layout)


def _resolution(ds: Dataset) -> str:
    if isinstance(ds, UInt8Images):
        return f"{ds.height}x{ds.width}"
    first = ds[0]
    return f"{first.shape[1]}x{first.shape[2]}"


class _CachedOnly(Dataset):
    """Stand-in for a reference known only by its cache key: reading it is a bug."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __len__(self) -> int:
        raise RuntimeError(f"reference {self.key!r} is cache-only but its cache was not used")

    def __getitem__(self, i: int) -> torch.Tensor:
        raise RuntimeError(f"reference {self.key!r} is cache-only but its cache was not used")


def _sanitize(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", s).strip("_")


def reference_key(
    manifest_hash: str, *, split: str, resolution: int | tuple[int, int], dataset: str = ""
) -> str:
    """Cache key of a reference set: ``<dataset>-<split>-<H>x<W>-<manifest hash>`` (file-safe).

    ``manifest_hash`` is the dataset manifest's content hash (the caller's guarantee that the
    same key means the same images).
    """
    if not manifest_hash:
        raise ValueError("manifest_hash is required")
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    parts = [dataset, split, f"{h}x{w}", manifest_hash]
    return _sanitize("-".join(p for p in parts if p))


def _fidelity_cache_root(root: Path) -> Path:
    return root / "fidelity"


def _meta_path(root: Path, key: str) -> Path:
    return _fidelity_cache_root(root) / f"{key}-{FEATURE_EXTRACTOR}-meta.json"


def _features_path(root: Path, key: str) -> Path:
    return _fidelity_cache_root(root) / f"{key}-{FEATURE_EXTRACTOR}-features-{FEATURE_LAYER}.pt"


def _stats_path(root: Path, key: str) -> Path:
    return _fidelity_cache_root(root) / f"{key}-{FEATURE_EXTRACTOR}-stat-fid-{FEATURE_LAYER}.pt"


def _write_json_atomic(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def cached_reference(key: str, cache_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The cached reference entry for ``key``: ``meta`` (dict), ``features`` ([N, 2048] tensor),
    and ``mu``/``sigma`` when torch-fidelity cached them. Raises ``FileNotFoundError`` if absent."""
    root = Path(cache_root) if cache_root is not None else cache_dir()
    meta_p, feat_p = _meta_path(root, key), _features_path(root, key)
    if not (meta_p.is_file() and feat_p.is_file()):
        raise FileNotFoundError(
            f"reference {key!r} is not cached under {_fidelity_cache_root(root)}; call "
            "compute_fidelity once with the reference images and reference_key=<key>"
        )
    out: dict[str, Any] = {
        "meta": json.loads(meta_p.read_text()),
        "features": torch.load(feat_p, map_location="cpu", weights_only=False),
    }
    stats_p = _stats_path(root, key)
    if stats_p.is_file():
        stats = torch.load(stats_p, map_location="cpu", weights_only=False)
        out["mu"], out["sigma"] = stats["mu"], stats["sigma"]
    return out


def _parse_metrics(metrics: Sequence[str] | str) -> list[str]:
    req = [metrics] if isinstance(metrics, str) else list(metrics)
    groups: list[str] = []
    for m in req:
        g = m.lower()
        if g not in METRIC_GROUPS:
            raise ValueError(f"unknown metric {m!r}; choose from {sorted(METRIC_GROUPS)}")
        g = {"prc": "pr", "isc": "is"}.get(g, g)
        if g not in groups:
            groups.append(g)
    if not groups:
        raise ValueError("no metrics requested")
    return groups


def compute_fidelity(
    samples: Any,
    reference: Any,
    *,
    metrics: Sequence[str] | str = ("fid", "kid", "pr"),
    reference_key: str | None = None,
    samples_key: str | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    inception_weights: str | os.PathLike[str] | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prc_neighborhood: int = 3,
    isc_splits: int = 10,
    rng_seed: int = 2020,
    layout: Layout = "auto",
    verbose: bool = True,
) -> dict[str, MetricResult]:
    """FID / KID / precision-recall / IS of ``samples`` against ``reference``.

    Args:
        samples: generated uint8 images, ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``
            (numpy or torch), or a torch ``Dataset`` yielding ``uint8 [3, H, W]`` tensors.
        reference: real uint8 images (same forms), or a cache key string (see
            :func:`reference_key`) of a reference computed earlier. Unused for ``"is"``.
        metrics: any of ``"fid"``, ``"kid"``, ``"pr"`` (precision + recall), ``"is"``.
        reference_key: cache the reference's features/statistics under this key (when
            ``reference`` holds images) so later calls can pass the key instead.
        samples_key: also cache the samples' features under this key (optional).
        batch_size: Inception batch size. device: ``"cuda"``/``"cpu"`` (default: CUDA if present).
        cache_root: cache folder (default :func:`unmask.metrics.inception.cache_dir`).
        inception_weights: torch-fidelity's standard weights file (enables ``"is"``); also read
            from ``$UNMASK_INCEPTION_WEIGHTS``.
        kid_subset_size: capped at min(N, N_ref).

    Returns:
        ``{name: MetricResult}`` with names ``fid``, ``kid``, ``kid_std``, ``precision``,
        ``recall``, ``inception_score``, ``inception_score_std`` for the requested groups.
    """
    import torch_fidelity

    groups = _parse_metrics(metrics)
    root = Path(cache_root) if cache_root is not None else cache_dir()
    weights: InceptionWeights = resolve_inception_weights(inception_weights, root)
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    cuda = dev.type == "cuda"

    sample_ds = _as_dataset(samples, layout)
    n = len(sample_ds)
    resolution = _resolution(sample_ds)
    common: dict[str, Any] = dict(
        cuda=cuda,
        batch_size=batch_size,
        feature_extractor=FEATURE_EXTRACTOR,
        feature_extractor_weights_path=str(weights.path),
        cache=True,
        cache_root=str(_fidelity_cache_root(root)),
        datasets_download=False,
        save_cpu_ram=True,  # in-memory data: no DataLoader worker processes
        samples_shuffle=True,
        rng_seed=rng_seed,
        verbose=verbose,
    )
    base_params: dict[str, Any] = {
        "num_samples": n,
        "resolution": resolution,
        "features": _FEATURES_TAG,
        "weights": weights.source,
    }
    results: dict[str, MetricResult] = {}

    binary = [g for g in groups if g in ("fid", "kid", "pr")]
    if binary:
        ref_input, ref_name, n_ref = _prepare_reference(reference, reference_key, root, layout)
        kid_size = min(kid_subset_size, n, n_ref)
        kw = dict(
            common,
            input1=sample_ds,
            input2=ref_input,
            input1_cache_name=samples_key,
            input2_cache_name=ref_name,
            fid="fid" in binary,
            kid="kid" in binary,
            prc="pr" in binary,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_size,
            prc_neighborhood=prc_neighborhood,
        )
        ctx = torch.cuda.device(dev) if cuda else nullcontext()
        with ctx:
            out = torch_fidelity.calculate_metrics(**kw)
        if ref_name is not None and not _meta_path(root, ref_name).is_file():
            _write_json_atomic(
                {
                    "key": ref_name,
                    "num_samples": n_ref,
                    "resolution": _resolution(ref_input),
                    "features": _FEATURES_TAG,
                    "torch_fidelity": torch_fidelity.__version__,
                },
                _meta_path(root, ref_name),
            )
        params = dict(base_params, num_reference=n_ref, reference=ref_name or "in-memory")
        if "fid" in binary:
            results[FID] = MetricResult.ok(FID, out[torch_fidelity.KEY_METRIC_FID], **params)
        if "kid" in binary:
            kp = dict(params, kid_subsets=kid_subsets, kid_subset_size=kid_size)
            kid_mean, kid_std = (out[torch_fidelity.KEY_METRIC_KID_MEAN],
                                 out[torch_fidelity.KEY_METRIC_KID_STD])
            results[KID] = MetricResult.ok(KID, kid_mean, **kp)
            results[KID_STD] = MetricResult.ok(KID_STD, kid_std, **kp)
        if "pr" in binary:
            pp = dict(params, prc_neighborhood=prc_neighborhood)
            for name, key in ((PRECISION, torch_fidelity.KEY_METRIC_PRECISION),
                              (RECALL, torch_fidelity.KEY_METRIC_RECALL)):
                results[name] = MetricResult.ok(name, out[key], **pp)

    if "is" in groups:
        is_params = dict(base_params, isc_splits=isc_splits)
        if not weights.has_classifier:
            reason = weights.is_unavailable_reason or "no Inception classifier weights"
            for name in METRIC_GROUPS["is"]:
                results[name] = MetricResult.unavailable(name, reason, **is_params)
        else:
            kw = dict(common, input1=sample_ds, isc=True, isc_splits=isc_splits)
            ctx = torch.cuda.device(dev) if cuda else nullcontext()
            with ctx:
                out = torch_fidelity.calculate_metrics(**kw)
            results[INCEPTION_SCORE] = MetricResult.ok(
                INCEPTION_SCORE, out[torch_fidelity.KEY_METRIC_ISC_MEAN], **is_params
            )
            results[INCEPTION_SCORE_STD] = MetricResult.ok(
                INCEPTION_SCORE_STD, out[torch_fidelity.KEY_METRIC_ISC_STD], **is_params
            )
    return results


def _prepare_reference(
    reference: Any, key: str | None, root: Path, layout: Layout
) -> tuple[Dataset, str | None, int]:
    """(torch-fidelity input, cache name or None, number of reference images)."""
    if isinstance(reference, str):
        if key is not None and key != reference:
            raise ValueError(f"reference={reference!r} but reference_key={key!r}")
        name = _sanitize(reference)
        meta_p, feat_p = _meta_path(root, name), _features_path(root, name)
        if not (meta_p.is_file() and feat_p.is_file()):
            raise FileNotFoundError(
                f"reference {name!r} is not cached under {_fidelity_cache_root(root)}; call "
                "compute_fidelity once with the reference images and reference_key=<key>"
            )
        meta = json.loads(meta_p.read_text())
        return _CachedOnly(name), name, int(meta["num_samples"])
    ds = _as_dataset(reference, layout)
    name = _sanitize(key) if key is not None else None
    if name is not None and _meta_path(root, name).is_file():
        meta = json.loads(_meta_path(root, name).read_text())
        res = _resolution(ds)
        if int(meta["num_samples"]) != len(ds) or meta.get("resolution") != res:
            raise ValueError(
                f"reference key {name!r} is cached for {meta['num_samples']} images at "
                f"{meta.get('resolution')}, but {len(ds)} images at {res} were given: "
                "the key must change when the reference set changes"
            )
    return ds, name, len(ds)
