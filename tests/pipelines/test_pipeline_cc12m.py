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
import yaml

from unmask.config import load_params
from unmask.data.fixtures import write_cc12m
from unmask.data.shards import TokenShards
from unmask.scratch import run_dvc
from unmask.stages.experiment.params import ExperimentParams
from unmask.tokenizers.text import HashedBagOfWords

pytest.importorskip("diffusers")
REPO = Path(__file__).resolve().parents[2]
EXP = "cc12m"


def test_real_params():
    p = load_params(REPO / "pipelines" / EXP / "params.yaml", schema=ExperimentParams)
    assert p.data.dataset == "cc12m" and p.data.root == "/data/cc12m" and p.text is not None
    assert p.heldout.root not in (None, p.data.root)  # held-out shards kept apart
    assert p.evaluate.fid and p.evaluate.clip_path is None and p.sample.cfg_scale > 0
    dvc = yaml.safe_load((REPO / "pipelines" / EXP / "dvc.yaml").read_text())["stages"]
    assert list(dvc) == ["tokenize", "train", "sample", "evaluate", "report"]
    assert dvc["evaluate"]["metrics"] == ["out/metrics/evaluate-${name}.json"]  # cached: pushed
    # the page comes last: it needs the evaluate metrics (and so runs after that stage)
    assert "out/metrics/evaluate-${name}.json" in dvc["report"]["deps"]
    assert dvc["report"]["outs"] == ["out/report"]


@pytest.mark.slow
def test_dvc_repro_on_fixture(tmp_path, tiny_sd_vq, reproduce, check_sample_and_evaluate):
    data = write_cc12m(tmp_path / "cc12m", shards=2, per_shard=3, size=(72, 80), corrupt=1)
    held = write_cc12m(tmp_path / "cc12m-heldout", shards=1, per_shard=4, size=(64, 70))
    text = {"text.encoder": "bow", "text.dim": 16}
    heldout = {"heldout.root": str(held), "heldout.count": 3, "heldout.columns": 2}
    sample = {"sample.steps": 4, "sample.cfg_scale": 1.5, "sample.batch_size": 2}
    overrides = {**tiny_sd_vq, "data.root": str(data), "tokenizer.flip": True, **text}
    root = reproduce(EXP, {**overrides, **heldout, **sample})
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
    shown = io.StringIO(run_dvc(["metrics", "show"], root / "pipelines" / EXP).stdout).read()
    assert "train-di-cc12m.json" in shown and "evaluate-di-cc12m.json" in shown

    # Held-out pairs: the first 3 samples of the held-out shard, captions read from the tar.
    with tarfile.open(held / "00000.tar") as tar:
        names = sorted(m.name for m in tar.getmembers() if m.name.endswith(".txt"))[:3]
        expect_caps = [tar.extractfile(n).read().decode() for n in names]
    check_sample_and_evaluate(out, "di-cc12m", expect_caps, image_size=64)

