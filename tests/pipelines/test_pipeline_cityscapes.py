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

diffusers = pytest.importorskip("diffusers")

from unmask.joint import stages  # noqa: E402
from unmask.joint.common import load_model  # noqa: E402

PIPE = Path(__file__).resolve().parents[2] / "pipelines" / "cityscapes"


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


def _tiny_vq_f8(path: Path) -> None:
    """SD-VQ-F8's structure (4 levels → f = 8, 16 384 codes of dim 4) with tiny widths."""
    torch.manual_seed(0)
    model = diffusers.VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        num_vq_embeddings=16384,
        norm_num_groups=4,
        sample_size=32,
    )
    with torch.no_grad():
        model.quantize.embedding.weight.normal_(0, 0.5)
    model.save_pretrained(path)


@pytest.mark.slow
def test_cityscapes_pipeline_on_fixture(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    data, vq = tmp_path / "cityscapes", tmp_path / "sd-vq-f8"
    for i in range(4):
        _pair(data, "train", "aachen", i)
    _pair(data, "val", "lindau", 7)
    _tiny_vq_f8(vq)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    sets = [
        f"data.root={data}",
        f"tokenizer.path={vq}",
        "data.image_size=[32, 64]",
        "data.mask_size=[4, 8]",
        "model.preset=tiny",
        "model.dim=32",
        "model.depth=2",
        "train.steps=3",
        "train.batch_size=2",
        "train.warmup_steps=1",
        "train.device=cpu",
        "train.ckpt_every=3",
        "sample.num_joint=2",
        "sample.num_eval=1",
        "sample.batch_size=2",
        "sample.steps=4",
        "sample.seg_steps=4",
        "evaluate.fid=false",
        "tracking.enabled=false",
    ]
    argv = ["--params", str(PIPE / "params.yaml")] + [a for s in sets for a in ("--set", s)]

    meta = stages.main(["tokenize", *argv])
    assert meta["image_vocab"] == 16384 and meta["num_classes"] == 8
    assert meta["image_shape"] == [4, 8] and meta["mask_shape"] == [4, 8]
    with np.load("tokens/tokens.npz") as z:
        assert z["train_image"].shape == (4, 4, 8) and z["train_mask"].shape == (4, 4, 8)
        assert z["test_mask"].shape == (1, 4, 8)
        # sky band on top, car band at the bottom: DI's categories 5 and 7
        assert (z["train_mask"][:, 0] == 5).all() and (z["train_mask"][:, -1] == 7).all()
        assert z["train_image"].max() < 16384

    summary = stages.main(["train", *argv])
    assert summary["step"] == 3 and summary["seq_len"] == 64
    model, _ = load_model(Path("models/model.pt"))
    assert model.cfg.vocab_size == 16384 + 8
    assert [m.name for m in model.cfg.modalities] == ["image", "mask"]
    # logits of mask positions only cover the 8 categories
    x = torch.full((1, 64), model.cfg.mask_id)
    with torch.no_grad():
        p = model(x, torch.tensor([0.5])).softmax(-1)
    assert float(p[0, 32:, :16384].sum()) == 0.0 and float(p[0, :32, 16384:].sum()) == 0.0

    out = stages.main(["evaluate", *argv])
    assert 0.0 <= out["miou_image_to_mask"] <= 1.0 and 0.0 <= out["miou_foreground"] <= 1.0
    assert out["fid_mask_to_image"] is None and "fid_mask_to_image" in out["unavailable"]
    assert json.loads(Path("metrics.json").read_text())["num_eval"] == 1
    assert Path("samples/image_to_mask.png").is_file() and Path("report/index.html").is_file()
