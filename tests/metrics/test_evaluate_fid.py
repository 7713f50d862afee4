"""The evaluate stage's FID: real held-out images as the reference, cached by the dataset
manifest hash; the held-out set scored against itself gives ~0, a noisy copy more."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unmask.config import load_params
from unmask.metrics.fidelity import cached_features

REPO = Path(__file__).resolve().parents[2]


def _prepared(root, images, manifest_extra=""):
    d = root / "data" / "prepared"
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "test.npz", images=images, labels=np.zeros(len(images), np.int64))
    (d / "manifest.json").write_text(
        json.dumps({"splits": {"test": len(images)}, "x": manifest_extra})
    )


def test_fid_scores_against_the_held_out_split(
    tmp_path, monkeypatch, metrics_cache, converted_weights, fmnist
):
    from unmask.stages.evaluate import fid_scores

    monkeypatch.chdir(tmp_path)
    real = fmnist[:16]
    _prepared(tmp_path, real)
    params = load_params(
        REPO / "params.yaml",
        [
            "tokenizer.kind=pixel",
            "evaluate.fid_recon=false",
            "evaluate.fid_reference=16",
            "evaluate.fid_num_samples=16",
            "evaluate.fid_batch_size=16",
        ],
    )
    same, settings = fid_scores(params, real, tok=None)
    assert abs(same["fid"]) < 1e-3
    assert settings["num_samples"] == 16 and settings["num_reference"] == 16
    key = settings["reference"]
    assert settings["dataset_manifest_sha256"][:16] in key
    assert cached_features(key, metrics_cache)["features"].shape == (16, 2048)

    rng = np.random.default_rng(0)
    noisy = np.clip(real + rng.normal(0, 60, real.shape), 0, 255).astype(np.uint8)
    worse, _ = fid_scores(params, noisy, tok=None)
    assert worse["fid"] > 10 * max(same["fid"], 1e-3) and worse["fid"] > 1.0

    # a different manifest is a different cache key
    _prepared(tmp_path, real, manifest_extra="changed")
    _, settings2 = fid_scores(params, real, tok=None)
    assert settings2["reference"] != key
