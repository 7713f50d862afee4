"""pipelines/cifar10-s8 (DI Table S8, κ-schedule ablation): the foreach DAG has one training
stage per schedule; `dvc repro` on a tiny cifar-10-batches-py fixture trains each schedule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unmask.config import load_params
from unmask.data.cifar10 import CIFAR10
from unmask.data.fixtures import write_cifar10
from unmask.data.shards import TokenShards
from unmask.scratch import run_dvc, scratch_pipeline
from unmask.stages.experiment.params import ExperimentParams
from unmask.tokenizers import PixelTokenizer

REPO = Path(__file__).resolve().parents[2]
EXP = "cifar10-s8"


def test_real_params_and_dag():
    p = load_params(REPO / "pipelines" / EXP / "params.yaml", schema=ExperimentParams)
    assert p.data.root == "/data/cifar10" and len(p.schedules) >= 4
    assert {"linear", "cosine"} <= set(p.schedules)
    dag = run_dvc(["dag", "--mermaid", "train@cosine"], REPO / "pipelines" / EXP).stdout
    assert "tokenize" in dag and "train@cosine" in dag


@pytest.mark.slow
def test_dvc_repro_on_fixture(tmp_path, tiny):
    root_data = tmp_path / "cifar"
    write_cifar10(root_data, per_batch=4, test=4)
    over = {
        "data.root": str(root_data),
        "tokenizer.size": 8,
        "schedules": ["linear", "cosine"],
        "sample.steps": 4,
        "sample.n_per_class": 1,
        **tiny,
    }
    root = scratch_pipeline(REPO, EXP, tmp_path / "repo", over)
    pipe = root / "pipelines" / EXP  # its own DVC project
    dag = run_dvc(["dag", "--mermaid"], pipe).stdout
    assert "train@linear" in dag and "train@cosine" in dag and "train@arccos" not in dag
    run_dvc(["repro"], pipe)
    out = root / "pipelines" / EXP / "out"

    shard = TokenShards(out / "tokens" / "train")
    assert len(shard) == 20 and shard.shape == (8, 24) and shard.has_flip
    ds = CIFAR10(root_data, "train")
    images = np.stack([ds[i]["image"] for i in range(len(ds))])
    pix = PixelTokenizer(levels=256, size=8, channels=3)
    np.testing.assert_array_equal(shard.tokens, pix.encode(images).numpy())
    np.testing.assert_array_equal(shard.flipped, pix.encode(images[:, :, ::-1].copy()).numpy())
    np.testing.assert_array_equal(shard.labels, [ds[i]["label"] for i in range(len(ds))])
    for sched in ("linear", "cosine"):
        m = json.loads((out / "metrics" / f"train-{sched}.json").read_text())
        assert m["schedule"] == sched and m["step"] == 3 and np.isfinite(m["loss"])
        assert (out / "models" / sched / "model.pt").is_file()
        with np.load(out / "samples" / sched / "samples.npz") as z:  # 10 classes × 1
            assert z["images"].shape == (10, 8, 8, 3) and z["tokens"].shape == (10, 8, 24)
    shown = run_dvc(["metrics", "show"], pipe).stdout
    assert "train-linear.json" in shown and "train-cosine.json" in shown
    # the report stage ran last: tracking is off here, so the writer's page says so, with both grids
    page = (out / "report" / "index.html").read_text()
    assert "Tracking is disabled" in page and page.count("<img") == 2
    assert "schedule linear" in page and "schedule cosine" in page
