"""pipelines/coco end to end on a tiny COCO 2014 fixture (official layout, one corrupt image) with
a random SD-VQ-F8-structured VQModel and the weight-free text encoder: `dvc repro` through
tokenize (captions → embeddings) and a few text-conditioned training steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unmask.data.fixtures import scratch_pipeline, write_coco, write_random_vqmodel
from unmask.data.shards import TokenShards
from unmask.stages.experiment import load_experiment_params
from unmask.tokenizers.text import HashedBagOfWords

pytest.importorskip("diffusers")
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXP = "coco"
TINY = {
    "model.preset": "tiny",
    "model.dim": 32,
    "model.depth": 1,
    "model.heads": 2,
    "train.steps": 3,
    "train.batch_size": 4,
    "train.warmup_steps": 1,
    "train.log_every": 1,
    "train.ckpt_every": 3,
    "train.device": "cpu",
    "tracking.enabled": False,
}


def dvc(args: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    out = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, f"dvc {args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_real_params():
    p = load_experiment_params(REPO / "pipelines" / EXP / "params.yaml")
    assert p.data.dataset == "coco" and p.data.root == "/data/coco"
    assert p.tokenizer.kind == "sd_vq" and p.text is not None and p.text.encoder == "clip"


@pytest.mark.slow
def test_dvc_repro_on_fixture(tmp_path):
    data = write_coco(tmp_path / "coco", "train", n=6, size=(72, 80), corrupt=1)
    vq = write_random_vqmodel(tmp_path / "sd-vq-f8")
    over = {
        "data.root": str(data),
        "data.image_size": 64,
        "data.batch_size": 4,
        "tokenizer.path": str(vq),
        "tokenizer.device": "cpu",
        "tokenizer.flip": False,
        "text.encoder": "bow",
        "text.dim": 16,
        **TINY,
    }
    root = scratch_pipeline(REPO, EXP, tmp_path / "repo", over)
    dvc(["repro", f"pipelines/{EXP}/dvc.yaml"], root)
    out = root / "pipelines" / EXP / "out"

    tok = json.loads((out / "metrics" / "tokenize.json").read_text())
    assert (tok["images"], tok["requested"], tok["skipped"]) == (5, 6, 1)
    assert tok["skipped_files"][0].endswith("COCO_train2014_000000001035.jpg")
    shard = TokenShards(out / "tokens" / "train")
    assert shard.shape == (8, 8) and shard.labels.tolist() == [0, 1, 2, 3, 4]  # caption rows
    # Row i holds the embedding of the first caption of the i-th image (annotation order).
    ann = json.loads((data / "annotations" / "captions_train2014.json").read_text())
    first = {}
    for a in ann["annotations"]:
        first.setdefault(a["image_id"], a["caption"])
    ids = sorted(first)[:5]
    expect = HashedBagOfWords(16).encode([first[i] for i in ids])
    np.testing.assert_allclose(shard.latents, expect, atol=1e-6)
    assert shard.meta["text_encoder"]["dim"] == 16

    train = json.loads((out / "metrics" / "train-di-coco.json").read_text())
    assert train["step"] == 3 and np.isfinite(train["loss"])
    assert (out / "models" / "di-coco" / "model.pt").is_file()
    assert "train-di-coco.json" in dvc(["metrics", "show"], root)
