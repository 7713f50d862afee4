"""End to end: pipelines/seg-default (its dvc.yaml + params.yaml, shrunk by overrides) runs with
`dvc repro` in a fresh git + DVC repo; every stage's outputs and metrics appear, both
metrics are logged to MLflow with the tag unmask.task=joint_seg, and a second `dvc repro`
changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unmask.config import parse_overrides
from unmask.data import fashion_mnist

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "seg-default"
SHRINK = [
    "data.max_train=512",
    "data.max_test=16",
    "tokenizer.vq.steps=20",
    "model.dim=32",
    "model.depth=1",
    "model.heads=2",
    "train.steps=4",
    "train.batch_size=16",
    "train.warmup_steps=1",
    "train.ckpt_every=2",
    "sample.steps=4",
    "sample.seg_steps=4",
    "sample.num_joint=4",
    "sample.num_eval=16",
    "sample.batch_size=16",
    "evaluate.fid=false",
    "tracking.root=mlruns",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not fashion_mnist.DEFAULT_ROOT.is_dir(), reason="apt-get install dataset-fashion-mnist"
    ),
    pytest.mark.skipif(not (BIN / "dvc").exists(), reason="dvc is not installed in this venv"),
]


def _merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


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


def test_seg_default_with_dvc(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    _run(["git", "init", "-q"], root)
    _run([str(BIN / "dvc"), "init", "-q"], root)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    pipe = root / "pipelines" / NAME
    pipe.mkdir(parents=True)
    shutil.copy(REPO / "pipelines" / NAME / "dvc.yaml", pipe / "dvc.yaml")
    params = _merge(
        yaml.safe_load((REPO / "pipelines" / NAME / "params.yaml").read_text()),
        parse_overrides(SHRINK),
    )
    (pipe / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run([str(BIN / "dvc"), "repro", f"pipelines/{NAME}/dvc.yaml"], root)

    for f in (
        "tokens/tokens.npz",
        "tokens/vq.pt",
        "models/model.pt",
        "samples/joint.png",
        "samples/image_to_mask.png",
        "samples/mask_to_image.png",
        "report/index.html",
    ):
        assert (pipe / f).is_file(), f
    m = json.loads((pipe / "metrics.json").read_text())
    assert 0.0 <= m["miou_image_to_mask"] <= 1.0 and m["num_eval"] == 16
    assert m["fid_mask_to_image"] is None and "fid_mask_to_image" in m["unavailable"]
    shown = _run([str(BIN / "dvc"), "metrics", "show", "--json"], root).stdout
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

    again = _run([str(BIN / "dvc"), "repro", f"pipelines/{NAME}/dvc.yaml"], root).stdout
    assert "didn't change" in again and "Running stage" not in again
