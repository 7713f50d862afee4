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

Image inputs (any layout, uint8) are :mod:`unmask.metrics.images`; the weights and the
extractor :mod:`unmask.metrics.inception`. How the pieces run: the images go through
torch-fidelity's extractor once per call (both the 2048-d features and, for IS, the logits in
the same pass); KID, precision/recall and IS are torch-fidelity's own
``kid_features_to_metric`` / ``prc_features_to_metric`` / ``isc_features_to_metric`` on those
features; FID is ``frechet_distance_from_features`` from :mod:`unmask.metrics.frechet` — the
same number as torch-fidelity's ``fid_statistics_to_metric`` (tested equal), without its
2048×2048 non-symmetric eigen-decomposition (10–60 s per call on two
CPU cores; exact in milliseconds when N < 2048).

Reference features are cached under ``<cache>/fidelity/<key>-inception-v3-compat-2048.pt``
(features + metadata, atomic write), keyed by :func:`reference_key` (dataset manifest hash,
split, resolution): the reference images go through Inception once and every later trial passes
the key string as ``reference``. A cached key given different images (count or resolution) is an
error, not a silent reuse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from unmask.metrics import MetricResult
from unmask.metrics.frechet import _one_blas_thread, frechet_distance_from_features
from unmask.metrics.images import Layout, as_dataset, image_resolution
from unmask.metrics.inception import (
    FEATURE_EXTRACTOR,
    FEATURE_LAYER,
    InceptionWeights,
    atomic_torch_save,
    cache_dir,
    extract,
    extractor,
    resolve_inception_weights,
)

__all__ = [
    "FID",
    "INCEPTION_SCORE",
    "INCEPTION_SCORE_STD",
    "KID",
    "KID_STD",
    "PRECISION",
    "RECALL",
    "cached_features",
    "compute_fidelity",
    "fidelity_from_features",
    "image_features",
    "reference_features",
    "reference_key",
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
_FEATURES_TAG = "inception-v3-2015-12-05-pool3-2048"


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


def _cache_file(root: Path, key: str) -> Path:
    return root / "fidelity" / f"{key}-{FEATURE_EXTRACTOR}-{FEATURE_LAYER}.pt"


def cached_features(key: str, cache_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The cache entry of ``key`` (a reference, or samples cached with ``samples_key``):
    ``features`` (``float32 [N, 2048]`` pool3 features) and ``meta`` (number of images,
    resolution, feature set, weights). ``FileNotFoundError`` if absent."""
    root = Path(cache_root) if cache_root is not None else cache_dir()
    path = _cache_file(root, _sanitize(key))
    if not path.is_file():
        raise FileNotFoundError(
            f"reference {key!r} is not cached ({path}); call compute_fidelity once with the "
            "reference images and reference_key=<key>"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


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


def _weights_and_device(
    inception_weights: str | os.PathLike[str] | None, root: Path,
    device: str | torch.device | None,
) -> tuple[InceptionWeights, torch.device]:
    """The Inception weights to use (:func:`resolve_inception_weights`) and the device (default:
    CUDA if present) — what every Inception pass starts from."""
    weights = resolve_inception_weights(inception_weights, root)
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    return weights, dev


def _cache_reference(root: Path, name: str, ds: Dataset, feats: torch.Tensor,
                     weights: InceptionWeights) -> None:
    """Store a reference set's pool3 features with what identifies them (count, resolution,
    feature set, weights), as :func:`cached_features` reads them back."""
    meta = {"key": name, "num_samples": len(ds),  # type: ignore[arg-type]
            "resolution": image_resolution(ds), "features": _FEATURES_TAG,
            "weights": weights.source}
    atomic_torch_save({"features": feats, "meta": meta}, _cache_file(root, name))


def compute_fidelity(
    samples: Any,
    reference: Any,
    *,
    metrics: Sequence[str] | str = ("fid", "kid", "pr"),
    reference_key: str | None = None,
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
    samples_key: str | None = None,
    verbose: bool = True,
) -> dict[str, MetricResult]:
    """FID / KID / precision-recall / IS of ``samples`` against ``reference``.

    Args:
        samples: generated uint8 images, ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``
            (numpy or torch), or a torch ``Dataset`` yielding ``uint8 [3, H, W]`` tensors.
        reference: real uint8 images (same forms), or the cache key string (see
            :func:`reference_key`) of a reference computed earlier. Unused for ``"is"`` alone.
        metrics: any of ``"fid"``, ``"kid"``, ``"pr"`` (precision + recall), ``"is"``.
        reference_key: cache the reference's features under this key (when ``reference`` holds
            images; reused if already cached) so later calls can pass the key instead.
        batch_size: Inception batch size. device: ``"cuda"``/``"cpu"`` (default: CUDA if present).
        cache_root: cache folder (default :func:`unmask.metrics.inception.cache_dir`).
        inception_weights: torch-fidelity's standard weights file (enables ``"is"``); also read
            from ``$UNMASK_INCEPTION_WEIGHTS``.
        kid_subset_size: capped at min(N, N_ref).
        samples_key: also store the samples' pool3 features in the cache under this key
            (overwritten on every call; read back with :func:`cached_features`).

    Returns:
        ``{name: MetricResult}`` with names ``fid``, ``kid``, ``kid_std``, ``precision``,
        ``recall``, ``inception_score``, ``inception_score_std`` for the requested groups.
    """
    from torch_fidelity.metric_isc import (
        isc_features_to_metric,  # why: torch-fidelity loads torchvision
    )

    groups = _parse_metrics(metrics)
    root = Path(cache_root) if cache_root is not None else cache_dir()
    weights, dev = _weights_and_device(inception_weights, root, device)
    sample_ds = as_dataset(samples, layout)
    n = len(sample_ds)
    base_params: dict[str, Any] = {
        "num_samples": n,
        "resolution": image_resolution(sample_ds),
        "features": _FEATURES_TAG,
        "weights": weights.source,
    }
    binary = [g for g in groups if g in ("fid", "kid", "pr")]
    want_is = "is" in groups and weights.has_classifier
    if want_is and n < isc_splits:
        raise ValueError(f"Inception Score with {isc_splits} splits needs >= {isc_splits} samples")
    from torch_fidelity.feature_extractor_inceptionv3 import (
        FeatureExtractorInceptionV3,  # why: torch-fidelity loads torchvision
    )

    isc_layer = FeatureExtractorInceptionV3.get_default_feature_layer_for_metric("isc")
    layers = [FEATURE_LAYER] + ([isc_layer] if want_is else [])

    ref_feats: torch.Tensor | None = None
    ref_name: str | None = None
    ref_ds: Dataset | None = None
    if binary:
        ref_ds, ref_name, ref_feats = _prepare_reference(reference, reference_key, root, layout)

    results: dict[str, MetricResult] = {}
    if not binary and not want_is:
        feats: dict[str, torch.Tensor] = {}
    else:
        fe = extractor(weights, layers, dev)
        feats = extract(fe, sample_ds, batch_size, dev, verbose, "Inception (samples)")
        if samples_key is not None:
            meta = dict(base_params, key=_sanitize(samples_key))
            entry = {"features": feats[FEATURE_LAYER], "meta": meta}
            atomic_torch_save(entry, _cache_file(root, _sanitize(samples_key)))
        if binary and ref_feats is None:
            assert ref_ds is not None
            fe.features_list = [FEATURE_LAYER]
            ref_feats = extract(fe, ref_ds, batch_size, dev, verbose, "Inception (reference)")[
                FEATURE_LAYER
            ]
            if ref_name is not None:
                _cache_reference(root, ref_name, ref_ds, ref_feats, weights)

    if binary:
        assert ref_feats is not None
        params = dict(base_params, num_reference=int(ref_feats.shape[0]),
                      reference=ref_name or "in-memory")
        results.update(fidelity_from_features(
            feats[FEATURE_LAYER], ref_feats, metrics=binary, kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size, prc_neighborhood=prc_neighborhood,
            rng_seed=rng_seed, params=params))

    if "is" in groups:
        is_params = dict(base_params, isc_splits=isc_splits)
        if not want_is:
            reason = weights.is_unavailable_reason or "no Inception classifier weights"
            for name in METRIC_GROUPS["is"]:
                results[name] = MetricResult.unavailable(name, reason, **is_params)
        else:
            out = isc_features_to_metric(feats[isc_layer], isc_splits, True, rng_seed)
            results[INCEPTION_SCORE] = MetricResult.ok(
                INCEPTION_SCORE, out["inception_score_mean"], **is_params
            )
            results[INCEPTION_SCORE_STD] = MetricResult.ok(
                INCEPTION_SCORE_STD, out["inception_score_std"], **is_params
            )
    return results


def fidelity_from_features(
    features: torch.Tensor,
    reference: torch.Tensor,
    *,
    metrics: Sequence[str] | str = ("fid", "kid", "pr"),
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prc_neighborhood: int = 3,
    rng_seed: int = 2020,
    params: dict[str, Any] | None = None,
) -> dict[str, MetricResult]:
    """FID / KID / precision-recall from pool3 features ``[N, 2048]`` and ``[M, 2048]`` (what
    :func:`compute_fidelity` does after its Inception pass). ``kid_subset_size`` is capped at
    min(N, M); ``params`` are recorded in every result."""
    from torch_fidelity.metric_kid import (
        kid_features_to_metric,  # why: torch-fidelity loads torchvision
    )
    from torch_fidelity.metric_prc import (
        prc_features_to_metric,  # why: torch-fidelity loads torchvision
    )

    groups = _parse_metrics(metrics)
    if "is" in groups:
        raise ValueError("the Inception Score needs the classifier logits, not pool3 features")
    f_gen, f_ref = features.float().cpu(), reference.float().cpu()
    n, n_ref = int(f_gen.shape[0]), int(f_ref.shape[0])
    base = dict(params or {}, num_samples=n, num_reference=n_ref)
    results: dict[str, MetricResult] = {}
    if "fid" in groups:
        fid = frechet_distance_from_features(f_gen.double().numpy(), f_ref.double().numpy())
        results[FID] = MetricResult.ok(FID, fid, **base)
    if "kid" in groups:
        kid_size = min(kid_subset_size, n, n_ref)
        kp = dict(base, kid_subsets=kid_subsets, kid_subset_size=kid_size)
        with _one_blas_thread():  # 100 small kernel products: threads only contend
            out = kid_features_to_metric(f_gen, f_ref, kid_subsets=kid_subsets,
                                         kid_subset_size=kid_size, rng_seed=rng_seed,
                                         verbose=False)
        results[KID] = MetricResult.ok(KID, out["kernel_inception_distance_mean"], **kp)
        results[KID_STD] = MetricResult.ok(KID_STD, out["kernel_inception_distance_std"], **kp)
    if "pr" in groups:
        pp = dict(base, prc_neighborhood=prc_neighborhood)
        out = prc_features_to_metric(f_gen, f_ref, prc_neighborhood=prc_neighborhood,
                                     save_cpu_ram=True, verbose=False)
        results[PRECISION] = MetricResult.ok(PRECISION, out["precision"], **pp)
        results[RECALL] = MetricResult.ok(RECALL, out["recall"], **pp)
    return results


def image_features(
    images: Any,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    inception_weights: str | os.PathLike[str] | None = None,
    layout: Layout = "auto",
    verbose: bool = True,
) -> torch.Tensor:
    """The pool3 features ``float32 [N, 2048]`` of uint8 images (not cached: generated samples;
    a reference set goes through :func:`reference_features`)."""
    root = Path(cache_root) if cache_root is not None else cache_dir()
    weights, dev = _weights_and_device(inception_weights, root, device)
    fe = extractor(weights, [FEATURE_LAYER], dev)
    return extract(fe, as_dataset(images, layout), batch_size, dev, verbose,
                    "Inception (samples)")[FEATURE_LAYER]


def reference_features(
    images: Any,
    key: str,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    inception_weights: str | os.PathLike[str] | None = None,
    layout: Layout = "auto",
    verbose: bool = True,
) -> torch.Tensor:
    """The pool3 features ``float32 [N, 2048]`` of a reference set, cached under ``key``.

    The first call runs Inception and caches; later calls with the same key return the cache
    (checked against the images' count and resolution, as :func:`compute_fidelity` does). Two
    cached sets give an FID without another Inception pass:
    ``frechet_distance_from_features(a, b)``.
    """
    root = Path(cache_root) if cache_root is not None else cache_dir()
    ds, name, feats = _prepare_reference(images, key, root, layout)
    if feats is not None:
        return feats
    assert ds is not None and name is not None
    weights, dev = _weights_and_device(inception_weights, root, device)
    fe = extractor(weights, [FEATURE_LAYER], dev)
    feats = extract(fe, ds, batch_size, dev, verbose, "Inception (reference)")[FEATURE_LAYER]
    _cache_reference(root, name, ds, feats, weights)
    return feats


def _prepare_reference(
    reference: Any, key: str | None, root: Path, layout: Layout
) -> tuple[Dataset | None, str | None, torch.Tensor | None]:
    """(dataset to extract or None, cache name or None, cached features or None)."""
    if isinstance(reference, str):
        if key is not None and _sanitize(key) != _sanitize(reference):
            raise ValueError(f"reference={reference!r} but reference_key={key!r}")
        name = _sanitize(reference)
        return None, name, cached_features(name, root)["features"]
    if reference is None:
        raise ValueError("FID/KID/precision-recall need a reference (images or a cache key)")
    ds = as_dataset(reference, layout)
    name = _sanitize(key) if key is not None else None
    if name is not None and _cache_file(root, name).is_file():
        entry = cached_features(name, root)
        meta, res = entry["meta"], image_resolution(ds)
        if int(meta["num_samples"]) != len(ds) or meta.get("resolution") != res:
            raise ValueError(
                f"reference key {name!r} is cached for {meta['num_samples']} images at "
                f"{meta.get('resolution')}, but {len(ds)} images at {res} were given: "
                "the key must change when the reference set changes"
            )
        return None, name, entry["features"]
    return ds, name, None
