"""pipelines/coco end to end on a tiny COCO 2014 fixture (official layout, one corrupt image) with
a random SD-VQ-F8-structured VQModel and the weight-free text encoder: `dvc repro` through
tokenize (captions → embeddings), a few text-conditioned training steps, sampling from held-out
(val2014) captions with CFG, and evaluate (FID vs the held-out images, CLIP score unavailable
without an open_clip checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from unmask.config import load_params
from unmask.data.fixtures import write_coco
from unmask.data.shards import TokenShards
from unmask.scratch import run_dvc
from unmask.stages.experiment.params import ExperimentParams
from unmask.tokenizers.text import HashedBagOfWords

pytest.importorskip("diffusers")
REPO = Path(__file__).resolve().parents[2]
EXP = "coco"


def test_real_params():
    p = load_params(REPO / "pipelines" / EXP / "params.yaml", schema=ExperimentParams)
    assert p.data.dataset == "coco" and p.data.root == "/data/coco"
    assert p.tokenizer.kind == "sd_vq" and p.text is not None and p.text.encoder == "clip"
    assert p.heldout.root == "/data/coco" and p.heldout.split == "val"
    assert p.evaluate.fid and p.evaluate.clip_path is None and p.sample.cfg_scale > 0
    dvc = yaml.safe_load((REPO / "pipelines" / EXP / "dvc.yaml").read_text())["stages"]
    assert list(dvc) == ["tokenize", "train", "sample", "evaluate", "report"]
    assert dvc["evaluate"]["metrics"] == ["out/metrics/evaluate-${name}.json"]  # cached: pushed
    # the page comes last: it needs the evaluate metrics (and so runs after that stage)
    assert "out/metrics/evaluate-${name}.json" in dvc["report"]["deps"]
    assert dvc["report"]["outs"] == ["out/report"]


@pytest.mark.slow
def test_dvc_repro_on_fixture(tmp_path, tiny_sd_vq, reproduce, check_sample_and_evaluate):
    data = write_coco(tmp_path / "coco", "train", n=6, size=(72, 80), corrupt=1)
    write_coco(data, "val", n=4, size=(64, 70), corrupt=1)  # held out: 3 readable pairs
    text = {"text.encoder": "bow", "text.dim": 16}
    held = {"heldout.root": str(data), "heldout.count": 3, "heldout.columns": 2}
    sample = {"sample.steps": 4, "sample.cfg_scale": 1.5, "sample.batch_size": 2}
    overrides = {**tiny_sd_vq, "data.root": str(data), "tokenizer.flip": False, **text, **held}
    root = reproduce(EXP, {**overrides, **sample})
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
    shown = run_dvc(["metrics", "show"], root / "pipelines" / EXP).stdout
    assert "train-di-coco.json" in shown and "evaluate-di-coco.json" in shown

    # Held-out pairs: the first caption of each readable val2014 image, in annotation order.
    val = json.loads((data / "annotations" / "captions_val2014.json").read_text())
    first_val = {}
    for a in val["annotations"]:
        first_val.setdefault(a["image_id"], a["caption"])
    expect_caps = [first_val[i] for i in sorted(first_val)[:3]]
    check_sample_and_evaluate(out, "di-coco", expect_caps, image_size=64)

