"""Issue 22 through DVC itself: the default pipeline (repo dvc.yaml + params.yaml, shrunk by
overrides) reproduced in a scratch git + DVC repo; then the train stage's run folder and model
are deleted and ``dvc repro --force`` retrains it from scratch. The new model has the same bytes, so
``dvc.lock`` is unchanged and DVC sees no reason to rerun the sample stage after it (the
target is ``sample``: evaluate still writes sampling seconds into its metrics file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from unmask.data import fashion_mnist
from unmask.scratch import dvc_bin, run_dvc, scratch_pipeline

REPO = Path(__file__).resolve().parents[2]
SHRINK = [
    "data.n_train=256", "data.n_val=32", "data.n_test=64",
    "tokenizer.vq.steps=20", "tokenizer.vq.n_train=256", "tokenizer.vq.codebook_size=32",
    "model.dim=32", "model.depth=1", "model.heads=2",
    "train.steps=6", "train.batch_size=32", "train.warmup_steps=1", "train.log_every=2",
    "train.ckpt_every=3",
    "sample.steps=4", "sample.n_per_class=2", "sample.chain_frames=3",
    "evaluate.n_sequences=32", "evaluate.num_samples=1", "evaluate.batch_size=32",
    "evaluate.fid=false", "tracking.enabled=false",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not fashion_mnist.DEFAULT_ROOT.is_dir(),
                       reason="apt-get install dataset-fashion-mnist"),
    pytest.mark.skipif(not dvc_bin().exists(), reason="dvc is not installed"),
]


def test_retraining_from_scratch_leaves_dvc_lock_unchanged(tmp_path):
    root = scratch_pipeline(REPO, None, tmp_path / "pipeline", SHRINK)
    run_dvc(["repro", "sample"], root)
    lock = (root / "dvc.lock").read_text()
    model = (root / "models/model.pt").read_bytes()

    shutil.rmtree(root / "runs")
    (root / "models/model.pt").unlink()
    out = run_dvc(["repro", "--force", "--single-item", "train"], root)
    assert "Running stage 'train'" in out.stdout + out.stderr  # from scratch: no run folder
    assert (root / "models/model.pt").read_bytes() == model
    assert (root / "dvc.lock").read_text() == lock
    again = run_dvc(["repro", "sample"], root)
    assert "Running stage" not in again.stdout + again.stderr
    assert "up to date" in run_dvc(["status", "sample"], root).stdout
