"""End to end: pipelines/seg-default (its dvc.yaml + params.yaml, shrunk by overrides) runs with
`dvc repro` in a fresh git + DVC repo; every stage's outputs and metrics appear, both
metrics are logged to MLflow with the tag unmask.task=joint_seg, and a second `dvc repro`
changes nothing."""

from __future__ import annotations

import json

import pytest

from unmask.scratch import run_dvc

NAME = "seg-default"
SHRINK = {  # on top of the tiny Fashion-MNIST overrides: one block, 16 evaluated pairs
    "data": {"max_train": 512, "max_test": 16},
    "model": {"depth": 1},
    "train": {"batch_size": 16},
    "sample": {"seg_steps": 4, "num_joint": 4, "num_eval": 16, "batch_size": 16},
}


@pytest.mark.slow
def test_seg_default_with_dvc(tiny_fashion_mnist, reproduce, no_op_repro):
    samples = [f"samples/{s}.png" for s in ("joint", "image_to_mask", "mask_to_image")]
    outputs = ["tokens/tokens.npz", "tokens/vq.pt", "models/model.pt", "report/index.html"]
    root = reproduce(NAME, {**tiny_fashion_mnist, **SHRINK}, outputs + samples)
    pipe = root / "pipelines" / NAME
    m = json.loads((pipe / "metrics.json").read_text())
    assert 0.0 <= m["miou_image_to_mask"] <= 1.0 and m["num_eval"] == 16
    assert m["fid_mask_to_image"] is None and "fid_mask_to_image" in m["unavailable"]
    shown = run_dvc(["metrics", "show", "--json"], pipe).stdout
    assert "miou_image_to_mask" in shown

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{pipe / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("joint-seg")
    runs = client.search_runs([exp.experiment_id], "tags.`unmask.task` = 'joint_seg'")
    names = {r.info.run_name for r in runs}
    assert {"tokenize", "train", "evaluate"} <= names
    ev = next(r for r in runs if r.info.run_name == "evaluate")
    assert abs(ev.data.metrics["miou_image_to_mask"] - m["miou_image_to_mask"]) < 1e-9
    assert "disabled" in ev.data.tags["unavailable.fid_mask_to_image"]  # FID off when shrunk

    no_op_repro(root, NAME)
