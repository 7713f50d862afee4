"""pipelines/dmlab on tiny TECO-format npz episodes and a tiny random SD-VQ-F8-shaped
diffusers VQModel, both written by the test: tokenize (16-frame clips) → a few training steps →
evaluate with frame-conditioned prediction, using the pipeline's own params.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from unmask.joint.common import load_model  # noqa: E402
from unmask.video import stages  # noqa: E402

PIPE = Path(__file__).resolve().parents[2] / "pipelines" / "dmlab"


def _episode(path: Path, t: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)
    np.savez_compressed(path, video=video, actions=rng.integers(0, 6, (t,), dtype=np.int32))


def _tiny_vq_f8(path: Path) -> None:
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
def test_dmlab_pipeline_on_fixture(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    data, vq = tmp_path / "dmlab", tmp_path / "sd-vq-f8"
    _episode(data / "train" / "0.npz", 40, 0)  # 2 clips of 16
    _episode(data / "train" / "1.npz", 16, 1)  # 1 clip
    _episode(data / "test" / "2.npz", 16, 2)
    _tiny_vq_f8(vq)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    sets = [
        f"data.root={data}",
        f"tokenizer.path={vq}",
        "model.preset=tiny",
        "model.dim=32",
        "model.depth=2",
        "train.steps=2",
        "train.batch_size=2",
        "train.warmup_steps=1",
        "train.device=cpu",
        "train.ckpt_every=2",
        "sample.num_uncond=2",
        "sample.num_cond=1",
        "sample.batch_size=2",
        "sample.steps=4",
        "evaluate.fid=false",
        "tracking.enabled=false",
    ]
    argv = ["--params", str(PIPE / "params.yaml")] + [a for s in sets for a in ("--set", s)]

    meta = stages.main(["tokenize", *argv])
    assert meta["frames"] == 16 and meta["grid"] == [2, 2]
    assert meta["counts"] == {"train": 3, "test": 1}
    summary = stages.main(["train", *argv])
    assert summary["step"] == 2 and summary["seq_len"] == 64
    model, _ = load_model(Path("models/model.pt"))
    assert model.cfg.attention == "factorized" and model.cfg.frames == 16

    out = stages.main(["evaluate", *argv])
    # DMLab's evaluation: the first 4 frames are given and come back exactly
    assert out["context_frames"] == 4 and out["context_kept_exactly"] is True
    with np.load("tokens/tokens.npz") as z:
        assert z["test"].shape == (1, 16, 2, 2)
