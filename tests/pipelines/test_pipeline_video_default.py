"""End to end: pipelines/video-default (its dvc.yaml + params.yaml, shrunk by overrides) runs
with `dvc repro` in a fresh git + DVC repo: tokens, model, GIF / MP4 / frame-grid samples,
metrics.json (FVD reported unavailable without I3D weights, the given frames kept exactly),
MLflow runs tagged unmask.task=video; a second `dvc repro` changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from unmask.config import parse_overrides
from unmask.data import fashion_mnist

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "video-default"
SHRINK = [
    "data.num_train=64",
    "data.num_test=8",
    "data.frames=4",
    "tokenizer.vq.steps=20",
    "model.dim=32",
    "model.depth=2",
    "model.heads=2",
    "train.steps=4",
    "train.batch_size=8",
    "train.warmup_steps=1",
    "train.ckpt_every=2",
    "sample.steps=4",
    "sample.num_uncond=4",
    "sample.num_cond=4",
    "sample.context_frames=2",
    "sample.batch_size=4",
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
    env.pop("UNMASK_I3D_PATH", None)
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_video_default_with_dvc(tmp_path):
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
        "models/model.pt",
        "samples/unconditional.png",
        "samples/conditioned.png",
        "report/index.html",
    ):
        assert (pipe / f).is_file(), f
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

    again = _run([str(BIN / "dvc"), "repro", f"pipelines/{NAME}/dvc.yaml"], root).stdout
    assert "didn't change" in again and "Running stage" not in again
