"""pipelines/faceforensics on tiny mp4s in the FaceForensics++ layout and a tiny random
SD-VQ-F8-shaped diffusers VQModel, both written by the test: tokenize (16-frame clips, frame by
frame) → a few training steps → evaluate, with the pipeline's own params.yaml."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

pytest.importorskip("diffusers")

from unmask import stages  # noqa: E402
from unmask.pretokenized import load_model  # noqa: E402

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


@pytest.mark.slow
def test_faceforensics_pipeline_on_fixture(tmp_path, sd_vq_f8, stage_cli):
    data = tmp_path / "ff"
    for i in range(3):
        _mp4(data / VIDEOS / f"{i:03d}.mp4", 34, seed=i)  # 2 clips of 16 frames each
    sets = {
        "data.root": data,
        "tokenizer.path": sd_vq_f8,
        "data.size": 16,
        "data.test_fraction": 0.34,
        "train.steps": 2,
        "train.ckpt_every": 2,
        "sample.num_uncond": 2,
        "sample.num_cond": 1,
    }
    run = stage_cli(stages.main, "faceforensics", sets)

    meta = run("video.tokenize")
    assert meta["frames"] == 16 and meta["grid"] == [2, 2] and meta["vocab_size"] == 16384
    assert meta["counts"] == {"train": 4, "test": 2}
    with np.load("tokens/tokens.npz") as z:
        assert z["train"].shape == (4, 16, 2, 2) and z["test_raw"].shape == (2, 16, 16, 16, 3)

    summary = run("video.train")
    assert summary["step"] == 2 and summary["seq_len"] == 64
    assert summary["attention"] == "factorized"
    model, _ = load_model(Path("models/model.pt"))
    assert model.cfg.frames == 16 and model.cfg.pos == "spacetime"

    out = run("video.evaluate")
    assert out["context_kept_exactly"] is True and out["context_frames"] == 1
    assert out["fvd"] is None and "fvd" in out["unavailable"]
    assert Path("samples/unconditional.gif").is_file()
