"""pipelines/imagenet256-di end to end on a tiny ILSVRC-2012 fixture (with a corrupt JPEG) and a
random SD-VQ-F8-structured diffusers VQModel: `dvc repro` through tokenize (with flips) and a
few training steps of a tiny model; plus the real params' DI-546M configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unmask.config import load_params
from unmask.data.fixtures import WNIDS, write_imagenet
from unmask.data.shards import TokenShards
from unmask.data.transforms import center_crop_arr
from unmask.models import Transformer
from unmask.scratch import run_dvc
from unmask.stages.experiment.params import ExperimentParams

pytest.importorskip("diffusers")
REPO = Path(__file__).resolve().parents[2]
EXP = "imagenet256-di"


def test_real_params_are_di_546m_on_sd_vq_f8_tokens():
    p = load_params(REPO / "pipelines" / EXP / "params.yaml", schema=ExperimentParams)
    assert p.data.root == "/data/imagenet" and p.tokenizer.kind == "sd_vq" and p.tokenizer.flip
    assert p.train.schedule == "linear" and p.model["cond_dropout"] > 0  # CFG training
    grid = (p.data.image_size // 8,) * 2  # SD-VQ-F8
    cfg = p.model_cfg(16384, grid, 1000)
    assert cfg.grid == (32, 32) and cfg.vocab_size == 16384 and cfg.preset == "di-546m"
    with torch.device("meta"):
        n = Transformer(cfg).num_params()
    assert abs(n - 546e6) / 546e6 < 0.01


@pytest.mark.slow
def test_dvc_repro_on_fixture(tmp_path, tiny_sd_vq, sd_vq_f8, reproduce):
    data = write_imagenet(tmp_path / "imagenet", per_class=3, size=(72, 80), corrupt=1)
    sample = {"sample.steps": 4, "sample.classes": [0, 2], "sample.n_per_class": 2}
    root = reproduce(EXP, {**tiny_sd_vq, "data.root": str(data), **sample})
    out = root / "pipelines" / EXP / "out"

    tok = json.loads((out / "metrics" / "tokenize.json").read_text())
    assert (tok["images"], tok["requested"], tok["skipped"]) == (8, 9, 1) and tok["flip"]
    assert tok["skipped_files"][0].endswith(f"{WNIDS[0]}_3.JPEG") and tok["vocab_size"] == 16384
    shard = TokenShards(out / "tokens" / "train")
    assert shard.shape == (8, 8) and shard.meta["num_classes"] == 3
    # Flipped tokens = SD-VQ tokens of the PIL-mirrored ADM crop of the first image.
    from unmask.tokenizers.sd_vq import SDVQTokenizer

    first = sorted((data / "train" / WNIDS[0]).glob("*.JPEG"))[0]
    crop = center_crop_arr(Image.open(first).convert("RGB"), 64)
    mirror = np.array(Image.fromarray(crop).transpose(Image.FLIP_LEFT_RIGHT))
    enc = SDVQTokenizer.from_pretrained(sd_vq_f8)
    np.testing.assert_array_equal(shard.tokens[0], enc.encode(crop[None]).numpy()[0])
    np.testing.assert_array_equal(shard.flipped[0], enc.encode(mirror[None]).numpy()[0])

    train = json.loads((out / "metrics" / "train-di-546m.json").read_text())
    assert train["step"] == 3 and np.isfinite(train["loss"]) and train["train_sequences"] == 16
    assert (out / "models" / "di-546m" / "model.pt").is_file()
    ckpt = torch.load(out / "models" / "di-546m" / "model.pt", weights_only=True)
    assert ckpt["model_config"]["vocab_size"] == 16384 and ckpt["model_config"]["num_classes"] == 3
    with np.load(out / "samples" / "di-546m" / "samples.npz") as z:  # decoded by SD-VQ
        assert z["images"].shape == (4, 64, 64, 3) and z["labels"].tolist() == [0, 0, 2, 2]
    assert (out / "samples" / "di-546m" / "grid.png").is_file()
    info = json.loads((out / "metrics" / "sample-di-546m.json").read_text())
    assert info["cfg_scale"] == 1.0 and info["nfe"] > 0 and info["method"] == "euler"  # DI ω = 2
    metrics = json.loads(run_dvc(["metrics", "show", "--json"], root / "pipelines" / EXP).stdout)
    flat = json.dumps(metrics)
    assert "train-di-546m.json" in flat and "tokenize.json" in flat
    plots = json.loads(run_dvc(["plots", "show", "--json"], root / "pipelines" / EXP).stdout)
    assert any("train-di-546m.csv" in k for k in plots["data"])
    dag = run_dvc(["dag", "--mermaid", "train"], root / "pipelines" / EXP).stdout
    assert "tokenize" in dag and "train" in dag
    page = (out / "report" / "index.html").read_text()  # the last stage (tracking off here)
    assert "Tracking is disabled" in page and page.count("<img") == 1 and "run di-546m" in page
