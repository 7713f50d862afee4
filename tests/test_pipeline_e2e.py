"""End to end: the repo's dvc.yaml + params.yaml (shrunk) run with `dvc repro` in a fresh
git + DVC repo; every stage's outputs appear (the learned VQ tokenizer with its held-out
metrics), and a second `dvc repro` changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from unmask.config import _merge, load_params, parse_overrides
from unmask.data import fashion_mnist

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
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
    "sample_seconds_per_sample",
    "fid",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not fashion_mnist.DEFAULT_ROOT.is_dir(), reason="apt-get install dataset-fashion-mnist"
    ),
    pytest.mark.skipif(not (BIN / "dvc").exists(), reason="dvc is not installed in this venv"),
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    _run(["git", "init", "-q"], root)
    _run([str(BIN / "dvc"), "init", "-q"], root)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = _merge(yaml.safe_load((REPO / "params.yaml").read_text()), parse_overrides(SHRINK))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    load_params(root / "params.yaml")  # the shrunk params are valid
    _run([str(BIN / "dvc"), "repro"], root)
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
    out = _run([str(BIN / "dvc"), "repro"], pipeline)
    text = out.stdout + out.stderr
    assert "Running stage" not in text
    assert "up to date" in text or "didn't change" in text
    status = _run([str(BIN / "dvc"), "status"], pipeline)
    assert "up to date" in status.stdout
