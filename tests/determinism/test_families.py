"""Issue 22 for every paper family: each stage, called the stage's own way (its CLI ``main`` or
its stage function, in a scratch folder, tiny overrides), run twice from scratch — with the
global RNGs in different states before each call, as separate processes would be — writes the
same model tensors and the same bytes (checkpoints, summaries, samples, metrics).

Families: MDM-Prime (``prime.train`` + ``prime.evaluate``), eMIGM (``train-discrete`` /
``train-continuous`` stages and the sampler), joint image + mask (``joint.tokenize``
(VQ-VAE), ``joint.train``, ``joint.evaluate``) and video (``video.*``), and the VQ-VAE
tokenizer itself.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from determinism_utils import assert_same_files, assert_same_tensors, load_state

from unmask.data import fashion_mnist

REPO = Path(__file__).resolve().parents[2]
needs_fmnist = pytest.mark.skipif(not fashion_mnist.DEFAULT_ROOT.is_dir(),
                                  reason="apt-get install dataset-fashion-mnist")


def _perturb(k: int) -> None:
    """Leave the global RNGs in a state that differs per call."""
    torch.manual_seed(10_007 * k + 1)
    random.seed(k)
    np.random.seed(k)


def twice(tmp_path: Path, body: Callable[[int], Any], setup: Callable[[Path], None] = None,
          ) -> tuple[Path, Path]:
    """Run ``body(k)`` with cwd = ``tmp_path/run<k>`` for k = 0, 1 (after ``setup(dir)``)."""
    old, dirs = Path.cwd(), []
    try:
        for k in range(2):
            d = tmp_path / f"run{k}"
            d.mkdir()
            if setup is not None:
                setup(d)
            os.chdir(d)
            body(k)
            dirs.append(d)
    finally:
        os.chdir(old)
    return dirs[0], dirs[1]


def cli_argv(params: Path, sets: dict[str, Any]) -> list[str]:
    argv = ["--params", str(params)]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return argv


def run_cli(main: Callable[[list[str]], Any], stages: Iterable[list[str]], argv: list[str],
            k: int) -> None:
    for i, stage in enumerate(stages):
        _perturb(10 * k + i)
        main([*stage, *argv])


# -- MDM-Prime --------------------------------------------------------------------------------
FORTUNES = "\n%\n".join(
    f"Fortune {i}: the {w} of {v} is {u}." for i, (w, v, u) in enumerate(
        [("cat", "code", "odd"), ("dog", "tests", "green"), ("owl", "rules", "kind")] * 40))


def _fortunes_data(tmp_path: Path) -> dict:
    """The Prime ``data`` section over a tiny fortunes corpus written under ``tmp_path``."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "fortunes").write_text(FORTUNES)
    return {"kind": "text", "source": "fortunes", "root": str(corpus), "block_size": 16,
            "valid_fraction": 0.2, "compact_vocab": True}


def test_prime_train_and_evaluate_are_bit_identical(tmp_path):
    from unmask.stages import main

    params = {
        "data": _fortunes_data(tmp_path),
        "model": {"dim": 32, "depth": 1, "heads": 2, "dropout": 0.1},
        "prime": {"ells": [2]},
        "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1, "log_every": 1,
                  "ckpt_every": 2, "device": "cpu"},
        "evaluate": {"n_sequences": 6, "num_samples": 2, "batch_size": 3},
        "sample": {"steps": 8, "num_samples": 2, "batch_size": 2},
        "tracking": {"enabled": False},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    argv = ["--params", str(path)]
    a, b = twice(tmp_path, lambda k: run_cli(
        main, [["prime.prepare"], ["prime.train", "--ell", "2"], ["prime.evaluate", "--ell", "2"]],
        argv, k))
    assert_same_tensors(load_state(a / "models/l2/model.pt"),
                        load_state(b / "models/l2/model.pt"), at_least=10)
    assert_same_files(a, b, "data", "models/l2", "eval/l2")
    assert "elapsed_s" not in json.loads((a / "models/l2/train.json").read_text())
    assert "sample_seconds" not in json.loads((a / "eval/l2/metrics.json").read_text())


# -- eMIGM ------------------------------------------------------------------------------------
EMIGM_TRAIN = {"steps": 6, "batch_size": 16, "warmup_steps": 2, "log_every": 2,
               "ckpt_every": 3}
EMIGM_MODEL = {"preset": "emigm-tiny", "dim": 32, "heads": 4, "depth": 1, "buffer_size": 2}


def _emigm_inputs(d: Path) -> None:
    g = np.random.default_rng(0)
    (d / "out/tokens").mkdir(parents=True)
    np.savez(d / "out/tokens/discrete.npz", tokens=g.integers(0, 16, (64, 4, 4)),
             labels=g.integers(0, 10, 64), vocab_size=16)
    np.savez(d / "out/tokens/continuous.npz",
             latents=g.normal(size=(32, 3, 2, 2)).astype(np.float32),
             labels=g.integers(0, 10, 32))


def test_emigm_train_stages_and_sampler_are_bit_identical(tmp_path):
    from unmask.emigm.params import EMIGMParams
    from unmask.emigm.pipeline import load_discrete
    from unmask.emigm.sample import sample_emigm
    from unmask.stages import run

    p = EMIGMParams.model_validate({
        "discrete": {"model": {**EMIGM_MODEL, "dropout": 0.1}, "train": EMIGM_TRAIN},
        "continuous": {"model": {**EMIGM_MODEL, "head": {"width": 32, "depth": 1}},
                       "train": EMIGM_TRAIN},
        "sample": {"steps": 4, "cfg_scale": 1.0, "cfg_schedule": "linear"},
        "tracking": {"enabled": False},
    })
    images: list[np.ndarray] = []

    def body(k: int) -> None:
        for i, stage in enumerate(("train-discrete", "train-continuous")):
            _perturb(10 * k + i)
            run(f"emigm.{stage}", p)
        _perturb(10 * k + 5)
        model = load_discrete(Path("out/models/discrete/model.pt"))
        smp = sample_emigm(model, lambda t: t.numpy().astype(np.uint8), torch.arange(8) % 10, p,
                           batch_size=4)
        images.append(smp.images)

    a, b = twice(tmp_path, body, _emigm_inputs)
    for kind in ("discrete", "continuous"):
        assert_same_tensors(load_state(a / f"out/models/{kind}/model.pt"),
                            load_state(b / f"out/models/{kind}/model.pt"), at_least=10)
        summary = json.loads((a / f"out/models/{kind}/train.json").read_text())
        assert "elapsed_s" not in summary and summary["steps"] == 6
    assert_same_files(a, b, "out/models")
    np.testing.assert_array_equal(images[0], images[1])


# -- joint image + mask, video --------------------------------------------------------------------
TINY_STAGES = {
    "model.preset": "tiny", "model.dim": 32, "model.heads": 2, "model.depth": 1,
    "train.steps": 4, "train.warmup_steps": 1, "train.batch_size": 8, "train.ckpt_every": 2,
    "train.log_every": 2, "train.device": "cpu", "tokenizer.vq.steps": 10,
    "sample.steps": 4, "evaluate.fid": False, "tracking.enabled": False,
}


@needs_fmnist
@pytest.mark.slow
def test_joint_seg_stages_are_bit_identical(tmp_path):
    from unmask import stages

    sets = {**TINY_STAGES, "data.max_train": 128, "data.max_test": 8, "sample.seg_steps": 4,
            "sample.num_joint": 4, "sample.num_eval": 8, "sample.batch_size": 8}
    argv = cli_argv(REPO / "pipelines/seg-default/params.yaml", sets)
    a, b = twice(tmp_path, lambda k: run_cli(
        stages.main, [["joint.tokenize"], ["joint.train"], ["joint.evaluate"]], argv, k))
    assert_same_tensors(load_state(a / "tokens/vq.pt"), load_state(b / "tokens/vq.pt"),
                        at_least=5)
    assert_same_tensors(load_state(a / "models/model.pt"), load_state(b / "models/model.pt"),
                        at_least=10)
    assert_same_files(a, b, "tokens", "models", "metrics.json", "samples", "report")
    assert "seconds" not in json.loads((a / "tokens/meta.json").read_text())
    assert "sample_seconds" not in json.loads((a / "metrics.json").read_text())


@needs_fmnist
@pytest.mark.slow
def test_video_stages_are_bit_identical(tmp_path):
    from unmask import stages

    sets = {**TINY_STAGES, "data.num_train": 32, "data.num_test": 4, "data.frames": 4,
            "sample.num_uncond": 2, "sample.num_cond": 2, "sample.context_frames": 2,
            "sample.batch_size": 2}
    argv = cli_argv(REPO / "pipelines/video-default/params.yaml", sets)
    a, b = twice(tmp_path, lambda k: run_cli(
        stages.main, [["video.tokenize"], ["video.train"], ["video.evaluate"]], argv, k))
    assert_same_tensors(load_state(a / "models/model.pt"), load_state(b / "models/model.pt"),
                        at_least=10)
    assert_same_files(a, b, "tokens", "models", "metrics.json", "samples", "report")


# -- the VQ-VAE tokenizer -----------------------------------------------------------------------
def test_vq_tokenizer_training_is_bit_identical():
    from unmask.tokenizers.vq import VQTokenizer, train_vq

    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    cfg = {"steps": 6, "batch_size": 8, "codebook_size": 16, "hidden": 8, "latent_dim": 4,
           "seed": 3}
    models = []
    for k in range(2):
        _perturb(k)
        models.append(train_vq(images, cfg, progress=False))
    assert_same_tensors(models[0].state_dict(), models[1].state_dict(), at_least=5)
    assert models[0].history == models[1].history
    codes = [VQTokenizer(m).encode(images[:8]) for m in models]
    assert torch.equal(codes[0], codes[1])


def test_prime_train_never_resumes_a_run_of_other_code(tmp_path, monkeypatch, capsys):
    """Issue 17: ``runs/l<ℓ>`` of other code is wiped (one line says so); the same code
    resumes at the final step without training."""
    from unmask.prime import pipeline
    from unmask.stages import main

    params = {
        "data": _fortunes_data(tmp_path),
        "model": {"dim": 32, "depth": 1, "heads": 2},
        "prime": {"ells": [2]},
        "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "ckpt_every": 3,
                  "device": "cpu"},
        "tracking": {"enabled": False},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    main(["prime.prepare"])
    main(["prime.train", "--ell", "2"])
    ckpt = tmp_path / "runs/l2/checkpoints/ckpt-00000003.pt"
    stamp = ckpt.stat().st_mtime_ns
    capsys.readouterr()

    main(["prime.train", "--ell", "2"])  # same code: resumed at step 3, nothing retrained
    assert "starting fresh" not in capsys.readouterr().err
    assert ckpt.stat().st_mtime_ns == stamp

    real = pipeline.code_fingerprint
    monkeypatch.setattr(pipeline, "code_fingerprint", lambda *m: "edited-" + real(*m))
    main(["prime.train", "--ell", "2"])  # other code: a fresh run
    err = capsys.readouterr().err
    assert "starting fresh" in err and "code differ" in err
    assert ckpt.stat().st_mtime_ns != stamp
