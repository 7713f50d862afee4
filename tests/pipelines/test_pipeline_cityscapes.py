"""pipelines/cityscapes on a tiny Cityscapes-layout fixture and a tiny random SD-VQ-F8-shaped
diffusers VQModel, both written by the test: tokenize → a few training steps → evaluate, with
the pipeline's own params.yaml (sizes overridden to the fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")

from unmask import stages  # noqa: E402
from unmask.pretokenized import load_model  # noqa: E402


def _pair(root: Path, split: str, city: str, frame: int) -> None:
    stem = f"{city}_000000_{frame:06d}"
    (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
    (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(frame)
    ids = np.zeros((64, 128), np.uint8)
    ids[:16], ids[16:32], ids[32:48], ids[48:] = 23, 11, 7, 26  # sky, building, road, car
    ids[32:40, rng.integers(0, 120) :][:, :8] = 24  # a person
    rgb = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
    Image.fromarray(ids).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")


@pytest.mark.slow
def test_cityscapes_pipeline_on_fixture(tmp_path, sd_vq_f8, stage_cli):
    data = tmp_path / "cityscapes"
    for i in range(4):
        _pair(data, "train", "aachen", i)
    _pair(data, "val", "lindau", 7)
    sets = {
        "data.root": data,
        "tokenizer.path": sd_vq_f8,
        "data.image_size": [32, 64],
        "data.mask_size": [4, 8],
        "train.steps": 3,
        "train.ckpt_every": 3,
        "sample.num_joint": 2,
        "sample.num_eval": 1,
        "sample.seg_steps": 4,
    }
    run = stage_cli(stages.main, "cityscapes", sets)

    meta = run("joint.tokenize")
    assert meta["image_vocab"] == 16384 and meta["num_classes"] == 8
    assert meta["image_shape"] == [4, 8] and meta["mask_shape"] == [4, 8]
    with np.load("tokens/tokens.npz") as z:
        assert z["train_image"].shape == (4, 4, 8) and z["train_mask"].shape == (4, 4, 8)
        assert z["test_mask"].shape == (1, 4, 8)
        # sky band on top, car band at the bottom: DI's categories 5 and 7
        assert (z["train_mask"][:, 0] == 5).all() and (z["train_mask"][:, -1] == 7).all()
        assert z["train_image"].max() < 16384

    summary = run("joint.train")
    assert summary["step"] == 3 and summary["seq_len"] == 64
    model, _ = load_model(Path("models/model.pt"))
    assert model.cfg.vocab_size == 16384 + 8
    assert [m.name for m in model.cfg.modalities] == ["image", "mask"]
    # logits of mask positions only cover the 8 categories
    x = torch.full((1, 64), model.cfg.mask_id)
    with torch.no_grad():
        p = model(x, torch.tensor([0.5])).softmax(-1)
    assert float(p[0, 32:, :16384].sum()) == 0.0 and float(p[0, :32, 16384:].sum()) == 0.0

    out = run("joint.evaluate")
    assert 0.0 <= out["miou_image_to_mask"] <= 1.0 and 0.0 <= out["miou_foreground"] <= 1.0
    assert out["fid_mask_to_image"] is None and "fid_mask_to_image" in out["unavailable"]
    assert json.loads(Path("metrics.json").read_text())["num_eval"] == 1
    assert Path("samples/image_to_mask.png").is_file() and Path("report/index.html").is_file()
