"""One FID, one meaning: an ablation trial (:func:`unmask.orchestration.evaluation.
evaluate_checkpoint`) and the pipeline's evaluate stage (:func:`unmask.stages.evaluate.
fid_scores`) score the same samples with the same numbers and settings — FID against the *real*
held-out images, ``fid_std``, KID with subsets smaller than the set — and FID / ``fid_std``
equal an independent scipy computation on the same Inception features."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.linalg

from unmask.config import load_params
from unmask.tokenizers import build_tokenizer

REPO = Path(__file__).resolve().parents[2]
N_TEST = 24
N_GEN = 20


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """TTUR / pytorch-fid recipe, with sqrtm taken in an orthonormal basis of the features'
    span (exact: both covariances live there; the 2048-d sqrtm of a rank-32 product is not)."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    q, _ = np.linalg.qr(np.concatenate([f1 - mu1, f2 - mu2]).T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm((q.T @ s1 @ q) @ (q.T @ s2 @ q))
    d = mu1 - mu2
    return float(np.real(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, metrics_cache: Path,
            converted_weights: Path) -> dict[str, Any]:
    """prepare + tokenize (pixel tokenizer) of a small real Fashion-MNIST project, and
    'generated' samples: held-out images with noise, through the tokenizer."""
    from unmask.stages import run as run_stage

    root = tmp_path_factory.mktemp("one-fid")
    params = load_params(REPO / "params.yaml", [
        "tokenizer.kind=pixel", "data.n_train=64", "data.n_val=16", f"data.n_test={N_TEST}",
        "evaluate.fid_recon=true", f"evaluate.fid_reference={N_TEST}",
        f"evaluate.fid_num_samples={N_GEN}", "evaluate.fid_batch_size=32",
        "evaluate.n_sequences=16", "evaluate.fid_std_subsets=20", "tracking.enabled=false"])
    with contextlib.chdir(root):
        for stage in ("prepare", "tokenize"):
            run_stage(stage, params)
    tok = build_tokenizer(params.tokenizer)
    with np.load(root / "data/prepared/test.npz") as z:
        real, labels = z["images"], z["labels"]
    rng = np.random.default_rng(0)
    noisy = np.clip(real.astype(float) + rng.normal(0, 40, real.shape), 0, 255).astype(np.uint8)
    tokens = tok.encode(noisy)
    return {"root": root, "params": params, "tok": tok, "tokens": np.asarray(tokens),
            "labels": labels, "images": tok.decode(tokens), "real": real}


@pytest.mark.slow
def test_trial_and_pipeline_report_the_same_fid(project: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch,
                                                metrics_cache: Path) -> None:
    import unmask.orchestration.evaluation as trial_eval
    from unmask.metrics.fidelity import cached_features, image_features
    from unmask.metrics.frechet import half_sample_indices
    from unmask.orchestration.evaluation import evaluate_checkpoint
    from unmask.orchestration.settings import EvalSettings
    from unmask.stages.evaluate import fid_scores

    root, params = project["root"], project["params"]

    def fake_generate(checkpoint: Any, p: Any, out_dir: Path, class_names: Any = None) -> dict:
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez(out_dir / "samples.npz", tokens=project["tokens"], labels=project["labels"],
                 images=project["images"])
        return {"nfe": 8, "seconds_per_sample": 0.1, "idle_step_ratio": 0.0,
                "n_samples": len(project["labels"]), "nfe_label": "8"}

    monkeypatch.setattr(trial_eval, "generate", fake_generate)  # the trial's sampling step
    trial = evaluate_checkpoint("unused.pt", params, EvalSettings(metric="fid"),
                                root / "trial", root / "data" / "tokens")
    with contextlib.chdir(root):
        pipe, settings = fid_scores(params, project["images"], project["tok"])

    assert trial.primary == "fid"
    for k in ("fid", "fid_std", "kid", "kid_std", "precision", "recall", "fid_recon",
              "fid_vs_recon"):
        assert trial.metrics[k] == pipe[k], k
    for k in ("reference", "num_samples", "num_reference", "kid_subset_size",
              "fid_std_subsets", "reference_set"):
        assert trial.params[f"fid.{k}"] == str(settings[k]), k
    assert "real images" in settings["reference_set"]
    assert settings["num_samples"] == N_GEN and settings["num_reference"] == N_TEST
    assert settings["kid_subset_size"] == N_GEN // 2  # < the set: kid_std is a real spread
    assert pipe["kid_std"] > 1e-3 * abs(pipe["kid"])

    # independent: scipy FIDs on the same features, fid_std recomputed from the same halves
    f_ref = cached_features(settings["reference"], metrics_cache)["features"].double().numpy()
    rec = cached_features(settings["recon_reference"], metrics_cache)["features"]
    f_gen = image_features(project["images"][:N_GEN], batch_size=32,
                           verbose=False).double().numpy()
    # fid_vs_recon: the samples against the tokenizer's reconstructions (never called fid)
    assert pipe["fid_vs_recon"] == pytest.approx(scipy_fid(f_gen, rec.double().numpy()),
                                                 rel=1e-4)
    assert pipe["fid"] == pytest.approx(scipy_fid(f_gen, f_ref), rel=1e-4)
    halves = half_sample_indices(N_GEN, 20, seed=params.evaluate.seed)
    theta = np.array([scipy_fid(f_gen[rows], f_ref) for rows in halves])
    h = N_GEN // 2  # kept; d = N_GEN - h deleted: var = h/d · mean (θ − θ̄)²
    jack = np.sqrt(h / (N_GEN - h) * np.mean((theta - theta.mean()) ** 2))
    assert pipe["fid_std"] == pytest.approx(jack, rel=1e-4)
    assert pipe["fid_std"] > 0


def test_missing_prepared_images_name_the_file_and_stage(tmp_path: Path) -> None:
    from unmask.metrics.heldout import heldout_fidelity

    params = load_params(REPO / "params.yaml")
    with pytest.raises(FileNotFoundError, match=r"test\.npz.*dvc repro prepare"):
        heldout_fidelity(np.zeros((4, 28, 28), np.uint8), params.evaluate,
                         prepared_dir=tmp_path, dataset="fashion_mnist")


def test_fid_std_subsets_of_one_is_a_clear_error() -> None:
    from unmask.config import ConfigError

    with pytest.raises(ConfigError, match="fid_std_subsets"):
        load_params(REPO / "params.yaml", ["evaluate.fid_std_subsets=1"])

