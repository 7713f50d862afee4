"""pipelines/faceforensics on tiny mp4s in the FaceForensics++ layout and a tiny random
SD-VQ-F8-shaped diffusers VQModel, both written by the test: tokenize (16-frame clips, frame by
frame) → a few training steps → evaluate, with the pipeline's own params.yaml."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from unmask.joint.common import load_model  # noqa: E402
from unmask.video import stages  # noqa: E402

PIPE = Path(__file__).resolve().parents[2] / "pipelines" / "faceforensics"
VIDEOS = "original_sequences/youtube/c23/videos"


def _mp4(path: Path, n: int, seed: int, size: int = 32) -> None:
    """n frames of a bright square moving right on a noisy background (lossless h264)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = imageio_ffmpeg.write_frames(
        str(path),
        (size, size),
        fps=25,
        codec="libx264",
        macro_block_size=16,
        quality=None,
        output_params=["-crf", "0"],
    )
    w.send(None)
    rng = np.random.default_rng(seed)
    for i in range(n):
        f = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        f[8:16, i % (size - 8) : i % (size - 8) + 8] = 230
        w.send(f.tobytes())
    w.close()


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
def test_faceforensics_pipeline_on_fixture(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    data, vq = tmp_path / "ff", tmp_path / "sd-vq-f8"
    for i in range(3):
        _mp4(data / VIDEOS / f"{i:03d}.mp4", 34, seed=i)  # 2 clips of 16 frames each
    _tiny_vq_f8(vq)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    sets = [
        f"data.root={data}",
        f"tokenizer.path={vq}",
        "data.size=16",
        "data.test_fraction=0.34",
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
    assert meta["frames"] == 16 and meta["grid"] == [2, 2] and meta["vocab_size"] == 16384
    assert meta["counts"] == {"train": 4, "test": 2}
    with np.load("tokens/tokens.npz") as z:
        assert z["train"].shape == (4, 16, 2, 2) and z["test_raw"].shape == (2, 16, 16, 16, 3)

    summary = stages.main(["train", *argv])
    assert summary["step"] == 2 and summary["seq_len"] == 64
    assert summary["attention"] == "factorized"
    model, _ = load_model(Path("models/model.pt"))
    assert model.cfg.frames == 16 and model.cfg.pos == "spacetime"

    out = stages.main(["evaluate", *argv])
    assert out["context_kept_exactly"] is True and out["context_frames"] == 1
    assert out["fvd"] is None and "fvd" in out["unavailable"]
    assert Path("samples/unconditional.gif").is_file()
