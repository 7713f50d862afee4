"""The paper-experiment stages (``experiment.*``) on the one stage framework: the params schema's
one-line errors, the runner's exit status, and tokenize → train --schedule → sample in process
on a tiny CIFAR-10 fixture (the DVC runs are in test_pipeline_{cifar10_s8,imagenet256_di,...})."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import unmask.stages
from unmask import schedules
from unmask.config import load_params
from unmask.data.cifar10 import CIFAR10
from unmask.data.fixtures import write_cifar10
from unmask.data.shards import TokenShards
from unmask.errors import ConfigError
from unmask.stages.experiment.params import ExperimentParams, ExpSample
from unmask.stages.experiment.sample import draw

REPO = Path(__file__).resolve().parents[2]
S8 = REPO / "pipelines" / "cifar10-s8" / "params.yaml"


def _error(overrides: dict[str, Any], path: Path = S8) -> str:
    with pytest.raises(ConfigError) as e:
        load_params(path, overrides, schema=ExperimentParams)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_schema_errors_name_the_key():
    assert "schedules: unknown schedule 'bogus'" in _error({"schedules": ["linear", "bogus"]})
    assert "train.schedule: unknown schedule 'bogus'" in _error({"train.schedule": "bogus"})
    assert "model.dimm: unknown key (did you mean 'model.dim'?)" in _error({"model.dimm": 8})
    assert "model.dim: must be > 0 (got -3)" in _error({"model.dim": -3})
    assert "'dim' (384) must be divisible by 'heads' (5)" in _error({"model.heads": 5})
    assert "unknown key 'sample.stepz' (did you mean 'sample.steps'?)" in _error(
        {"sample.stepz": 8})
    assert "data.dataset must be one of" in _error({"data.dataset": "mnist"})


def test_captioned_dataset_needs_text(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"dataset": "coco", "root": "/data/coco"}}))
    assert "dataset coco is captioned: set the text section" in _error({}, path)
    p = load_params(path, {"text.encoder": "bow"}, schema=ExperimentParams)
    assert p.text is not None and p.text.dim == 512


def test_model_cfg_derives_shape_and_refuses_a_clash():
    p = load_params(S8, schema=ExperimentParams)
    cfg = p.model_cfg(256, (32, 96), 10)  # CIFAR-10 pixel tokens: 3 channels along the row
    assert (cfg.vocab_size, cfg.grid, cfg.num_classes, cfg.length) == (256, (32, 96), 10, 3072)
    clash = load_params(S8, {"model.num_classes": 100}, schema=ExperimentParams)
    with pytest.raises(ConfigError, match="model.num_classes is derived from the data"):
        clash.model_cfg(256, (32, 96), 10)


def test_runner_turns_user_errors_into_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()  # the runner sets $UNMASK_THREADS (default 1)
    try:
        argv = ["experiment.train", "--params", str(S8), "--set", "tracking.enabled=false",
                "--schedule", "bogus"]
        with pytest.raises(SystemExit) as e:
            unmask.stages.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --schedule 'bogus': valid: linear") and "\n" not in err
        with pytest.raises(SystemExit) as e:
            unmask.stages.main(["experiment.tokenize", "--params", "missing.yaml"])
        assert e.value.code == 2
        assert "missing.yaml: params file not found" in capsys.readouterr().err
        with pytest.raises(SystemExit) as e:
            unmask.stages.main(["experiment.trian", "--params", str(S8)])
        assert e.value.code == 2
        assert "experiment.train" in capsys.readouterr().err  # lists the family's stages
    finally:
        torch.set_num_threads(threads)


def test_tokenize_train_sample_in_process(tmp_path, monkeypatch, tiny):
    data = write_cifar10(tmp_path / "cifar", per_batch=4, test=4)
    monkeypatch.chdir(tmp_path)  # out/ is relative to the working directory
    over = {**tiny, "data.root": str(data.parent), "tokenizer.size": 8, "sample.steps": 4,
            "sample.classes": [0, 3], "sample.n_per_class": 2}
    p = load_params(S8, over, schema=ExperimentParams)

    tok = unmask.stages.run("experiment.tokenize", p)
    assert (tok["images"], tok["skipped"], tok["vocab_size"]) == (20, 0, 256)
    shard = TokenShards(Path("out/tokens/train"))
    ds = CIFAR10(data.parent, "train")
    assert shard.shape == (8, 24) and shard.has_flip
    np.testing.assert_array_equal(shard.labels, [ds[i]["label"] for i in range(len(ds))])

    summary = unmask.stages.run("experiment.train", p, schedule="cosine")
    assert summary["schedule"] == "cosine" and summary["step"] == 3
    saved = json.loads(Path("out/metrics/train-cosine.json").read_text())
    assert saved == summary and np.isfinite(saved["loss"])
    ckpt = torch.load("out/models/cosine/model.pt", weights_only=True)
    assert ckpt["train_config"]["schedule"] == "cosine"  # --schedule overrides train.schedule
    assert ckpt["model_config"]["grid"] == [8, 24] and ckpt["model_config"]["num_classes"] == 10

    info = unmask.stages.run("experiment.sample", p, schedule="cosine")
    assert info["n_samples"] == 4 and info["steps"] == 4 and info["top_p"] == 1.0
    with np.load("out/samples/cosine/samples.npz") as z:
        assert z["images"].shape == (4, 8, 8, 3) and z["labels"].tolist() == [0, 0, 3, 3]
    assert Path("out/samples/cosine/grid.png").is_file()


def test_top_p_is_validated_with_the_key():
    for bad in (0, 1.5):
        msg = _error({"sample.top_p": bad})
        assert "sample.top_p must be" in msg, msg
    assert load_params(S8, schema=ExperimentParams).sample.top_p == 1.0  # default: off


class _FixedLogits(torch.nn.Module):
    """``model(x, t, y)`` with logits that depend on the position only, so the nucleus of
    every draw is known in advance."""

    null_class = None

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Any = None) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1)


def _nucleus(probs: np.ndarray, p: float) -> set[int]:
    """Holtzman et al.'s nucleus, computed independently: the most likely tokens, in order,
    while the mass before a token is still below p."""
    order = np.argsort(-probs, kind="stable")
    before = np.concatenate([[0.0], np.cumsum(probs[order])[:-1]])
    return {int(i) for i, b in zip(order, before, strict=True) if b < p}


def test_draw_passes_top_p_and_every_token_lies_in_its_nucleus():
    length, vocab, top_p = 12, 6, 0.6
    logits = torch.randn(1, length, vocab, generator=torch.Generator().manual_seed(3)) * 1.5
    probs = logits[0].softmax(-1).numpy().astype(np.float64)
    nuclei = [_nucleus(probs[i], top_p) for i in range(length)]
    assert all(len(n) < vocab for n in nuclei)  # the filter removes something everywhere
    cfg = SimpleNamespace(length=length, mask_id=vocab)
    model, y = _FixedLogits(logits), torch.zeros(64, dtype=torch.long)
    kappa = schedules.get("linear")
    # "mdm": each token is drawn once, from the filtered distribution of its reveal step
    full = draw(model, y, cfg, ExpSample(method="mdm", steps=8, seed=5), kappa).tokens
    nuc = draw(model, y, cfg, ExpSample(method="mdm", steps=8, seed=5, top_p=top_p),
               kappa).tokens
    assert not torch.equal(full, nuc)
    outside = lambda x: sum(int(x[b, i]) not in nuclei[i]  # noqa: E731
                            for b in range(len(y)) for i in range(length))
    assert outside(nuc) == 0
    assert outside(full) > 0  # without the filter, tokens outside the nucleus do occur
