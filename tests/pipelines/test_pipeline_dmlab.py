"""pipelines/dmlab on tiny TECO-format npz episodes and a tiny random SD-VQ-F8-shaped
diffusers VQModel, both written by the test: tokenize (16-frame clips) → a few training steps →
evaluate with frame-conditioned prediction, using the pipeline's own params.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

from unmask import stages  # noqa: E402
from unmask.pretokenized import load_model  # noqa: E402


def _episode(path: Path, t: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)
    np.savez_compressed(path, video=video, actions=rng.integers(0, 6, (t,), dtype=np.int32))


@pytest.mark.slow
def test_dmlab_pipeline_on_fixture(tmp_path, sd_vq_f8, stage_cli):
    data = tmp_path / "dmlab"
    _episode(data / "train" / "0.npz", 40, 0)  # 2 clips of 16
    _episode(data / "train" / "1.npz", 16, 1)  # 1 clip
    _episode(data / "test" / "2.npz", 16, 2)
    sets = {
        "data.root": data,
        "tokenizer.path": sd_vq_f8,
        "train.steps": 2,
        "train.ckpt_every": 2,
        "sample.num_uncond": 2,
        "sample.num_cond": 1,
    }
    run = stage_cli(stages.main, "dmlab", sets)

    meta = run("video.tokenize")
    assert meta["frames"] == 16 and meta["grid"] == [2, 2]
    assert meta["counts"] == {"train": 3, "test": 1}
    summary = run("video.train")
    assert summary["step"] == 2 and summary["seq_len"] == 64
    model, _ = load_model(Path("models/model.pt"))
    assert model.cfg.attention == "factorized" and model.cfg.frames == 16

    out = run("video.evaluate")
    # DMLab's evaluation: the first 4 frames are given and come back exactly
    assert out["context_frames"] == 4 and out["context_kept_exactly"] is True
    with np.load("tokens/tokens.npz") as z:
        assert z["test"].shape == (1, 16, 2, 2)
