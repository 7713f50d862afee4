"""End to end: pipelines/video-default (its dvc.yaml + params.yaml, shrunk by overrides) runs
with `dvc repro` in a fresh git + DVC repo: tokens, model, GIF / MP4 / frame-grid samples,
metrics.json (FVD reported unavailable without I3D weights, the given frames kept exactly),
MLflow runs tagged unmask.task=video; a second `dvc repro` changes nothing."""

from __future__ import annotations

import json

import pytest
from PIL import Image

NAME = "video-default"
SHRINK = {  # on top of the tiny Fashion-MNIST overrides: 4-frame clips, 4+4 samples
    "data": {"num_train": 64, "num_test": 8, "frames": 4},
    "model": {"depth": 2},
    "train": {"batch_size": 8},
    "sample": {"num_uncond": 4, "num_cond": 4, "context_frames": 2, "batch_size": 4},
}


@pytest.mark.slow
def test_video_default_with_dvc(tiny_fashion_mnist, reproduce, no_op_repro):
    samples = [f"samples/{s}.png" for s in ("unconditional", "conditioned")]
    outputs = ["tokens/tokens.npz", "models/model.pt", "report/index.html"]
    root = reproduce(NAME, {**tiny_fashion_mnist, **SHRINK}, outputs + samples)
    pipe = root / "pipelines" / NAME
    gif = Image.open(pipe / "samples" / "unconditional.gif")
    assert gif.n_frames == 4
    m = json.loads((pipe / "metrics.json").read_text())
    assert m["context_frames"] == 2 and m["context_kept_exactly"] is True
    assert m["fvd"] is None and "I3D" in m["unavailable"]["fvd"]
    assert "fid_per_frame" in m["unavailable"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{pipe / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("video")
    runs = client.search_runs([exp.experiment_id], "tags.`unmask.task` = 'video'")
    assert {"tokenize", "train", "evaluate"} <= {r.info.run_name for r in runs}

    no_op_repro(root, NAME)
