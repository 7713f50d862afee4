"""pipelines/cc12m end to end on tiny img2dataset webdataset shards (one corrupt JPEG) with a
random SD-VQ-F8-structured VQModel and the weight-free text encoder: `dvc repro` through
tokenize (streamed from the tars, flipped copies) and a few text-conditioned training steps."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from unmask.data.fixtures import run_dvc, write_cc12m
from unmask.data.shards import TokenShards
from unmask.stages.experiment import load_experiment_params
from unmask.tokenizers.text import HashedBagOfWords

pytest.importorskip("diffusers")
REPO = Path(__file__).resolve().parents[2]
EXP = "cc12m"


def test_real_params():
    p = load_experiment_params(REPO / "pipelines" / EXP / "params.yaml")
    assert p.data.dataset == "cc12m" and p.data.root == "/data/cc12m" and p.text is not None


@pytest.mark.slow
def test_dvc_repro_on_fixture(tmp_path, tiny_sd_vq, reproduce):
    data = write_cc12m(tmp_path / "cc12m", shards=2, per_shard=3, size=(72, 80), corrupt=1)
    text = {"text.encoder": "bow", "text.dim": 16}
    root = reproduce(EXP, {**tiny_sd_vq, "data.root": str(data), "tokenizer.flip": True, **text})
    out = root / "pipelines" / EXP / "out"

    tok = json.loads((out / "metrics" / "tokenize.json").read_text())
    assert (tok["images"], tok["requested"], tok["skipped"]) == (5, 6, 1) and tok["flip"]
    assert tok["skipped_files"][0] == "00000.tar:000000002.jpg"
    shard = TokenShards(out / "tokens" / "train")
    assert len(shard) == 5 and shard.has_flip and shard.labels.tolist() == list(range(5))
    # The captions of the good samples, read straight from the tars, in shard order.
    captions = []
    for s in (0, 1):
        with tarfile.open(data / f"{s:05d}.tar") as tar:
            for m in tar.getmembers():
                if m.name.endswith(".txt") and not (s == 0 and m.name.startswith("000000002")):
                    captions.append(tar.extractfile(m).read().decode())
    np.testing.assert_allclose(shard.latents, HashedBagOfWords(16).encode(captions), atol=1e-6)

    train = json.loads((out / "metrics" / "train-di-cc12m.json").read_text())
    assert train["step"] == 3 and train["train_sequences"] == 10 and np.isfinite(train["loss"])
    assert (out / "models" / "di-cc12m" / "model.pt").is_file()
    assert io.StringIO(run_dvc(["metrics", "show"], root).stdout).read().count("di-cc12m") >= 1
