"""End to end: the repo's dvc.yaml + params.yaml (shrunk) run with `dvc repro` in a fresh
git + DVC repo; every stage's outputs appear (the learned VQ tokenizer with its held-out
metrics), and a second `dvc repro` changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unmask.config import load_params
from unmask.data import fashion_mnist
from unmask.scratch import dvc_bin, run_dvc, scratch_pipeline

REPO = Path(__file__).resolve().parents[1]
SHRINK = [
    "data.n_train=256",
    "data.n_val=32",
    "data.n_test=64",
    "tokenizer.vq.steps=20",
    "tokenizer.vq.n_train=256",
    "tokenizer.vq.codebook_size=32",
    "model.dim=32",
    "model.depth=1",
    "model.heads=2",
    "train.steps=4",
    "train.batch_size=32",
    "train.warmup_steps=1",
    "train.log_every=2",
    "train.ckpt_every=2",
    "sample.steps=4",
    "sample.n_per_class=2",
    "sample.chain_frames=3",
    "evaluate.n_sequences=32",
    "evaluate.num_samples=1",
    "evaluate.batch_size=32",
    "evaluate.fid_recon=false",
]
METRIC_KEYS = {
    "nelbo_bpt",
    "nelbo_bpt_stderr",
    "nelbo_bpt_uncond",
    "hist_tv",
    "class_mean_mse",
    "unique_fraction",
    "sample_nfe",
    "fid",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not fashion_mnist.DEFAULT_ROOT.is_dir(), reason="apt-get install dataset-fashion-mnist"
    ),
    pytest.mark.skipif(not dvc_bin().exists(), reason="dvc is not installed"),
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    root = scratch_pipeline(REPO, None, tmp_path_factory.mktemp("pipeline"), SHRINK)
    load_params(root / "params.yaml")  # the shrunk params are valid
    run_dvc(["repro"], root)
    return root


def test_outputs_and_metrics(pipeline):
    for path in (
        "data/prepared/manifest.json",
        "data/tokens/train/manifest.json",
        "models/tokenizer.pt",
        "metrics/tokenizer.json",
        "metrics/tokenizer_history.csv",
        "models/model.pt",
        "models/train.json",
        "metrics/train_history.csv",
        "samples/samples.npz",
        "samples/grid.png",
        "samples/chain.png",
        "reports/index.html",
        "reports/metrics.csv",
        "dvc.lock",
    ):
        assert (pipeline / path).is_file(), path
    metrics = json.loads((pipeline / "metrics/metrics.json").read_text())
    assert set(metrics) >= METRIC_KEYS
    assert 0 < metrics["nelbo_bpt"] < 10 and 0 <= metrics["hist_tv"] <= 1
    tok = json.loads((pipeline / "metrics/tokenizer.json").read_text())
    assert tok["kind"] == "vq" and tok["vocab_size"] == 32 and tok["token_grid"] == [7, 7]
    assert 5 < tok["recon_psnr_db"] < 60 and 0 < tok["codebook_usage"] <= 1
    assert 1 <= tok["codebook_perplexity"] <= 32 and tok["n_heldout"] == 64
    with np.load(pipeline / "samples/samples.npz") as z:  # decoded through the VQ decoder
        assert z["tokens"].shape[1:] == (7, 7) and z["images"].shape[1:] == (28, 28)
    html = (pipeline / "reports/index.html").read_text()
    assert "data:image/png;base64," in html and "nelbo_bpt" in html
    assert (pipeline / "mlruns/mlflow.db").is_file()


def test_second_repro_is_a_no_op(pipeline):
    out = run_dvc(["repro"], pipeline)
    text = out.stdout + out.stderr
    assert "Running stage" not in text
    assert "up to date" in text or "didn't change" in text
    status = run_dvc(["status"], pipeline)
    assert "up to date" in status.stdout
