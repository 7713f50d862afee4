"""The joint stages on the one stage framework (``python -m unmask.stages joint.<stage>``):
bad params are one ``error:`` line naming the key before any work (the checks live in
:class:`~unmask.joint.params.JointParams`, read by :func:`unmask.config.load_params`), and an
interrupted ``joint.tokenize`` in a pipeline folder stops ``joint.train`` (the stage guard finds
the ``dvc.yaml`` stage ``tokenize`` by its command)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from unmask import pretokenized, pretokenized_evaluate, stages
from unmask.config import load_params
from unmask.data import fashion_mnist
from unmask.joint import JointLayout, restrict_logits
from unmask.joint.params import SampleSection
from unmask.joint.stages.evaluate import _sample_batches
from unmask.metrics.heldout import UNAVAILABLE_REASON

REPO = Path(__file__).resolve().parents[2]
SEG = REPO / "pipelines" / "seg-default"


def _params(tmp_path: Path, edit: dict[str, dict[str, Any]]) -> Path:
    """seg-default's params.yaml with the sections of ``edit`` merged in, tracking off."""
    raw = yaml.safe_load((SEG / "params.yaml").read_text())
    for section, values in {**edit, "tracking": {"enabled": False}}.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        stages.main(argv)
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # one line, no traceback
    return lines[0]


@pytest.mark.parametrize("edit, message", [
    ({"model": {"dimm": 64}}, "model.dimm: unknown model config key; valid: attention, "),
    ({"model": {"dim": "wide"}}, "model.dim: Input should be a valid integer"),
    ({"model": {"heads": 3}}, "model: 'dim' (128) must be divisible by 'heads' (3)"),
    ({"model": {"attention": "factorized"}},
     "model: 'attention' = 'factorized' needs 'frames' (video)"),
    ({"tokenizer": {"vq": {"stepz": 10}}}, "tokenizer.vq.stepz: unknown VQ-VAE key; valid: "),
    ({"sample": {"schedule": "cosin"}}, "sample.schedule: unknown schedule 'cosin'; valid: "),
    ({"sample": {"top_p": 0}}, "sample.top_p must be > 0 (got 0)"),
    ({"sample": {"top_p": 1.5}}, "sample.top_p must be <= 1 (got 1.5)"),
    ({"data": {"kind": "cityscapes", "root": None}},
     "data.root: set it to the Cityscapes folder (leftImg8bit/, gtFine/)"),
])
def test_bad_params_are_one_line_naming_the_key(tmp_path, monkeypatch, capsys, edit, message):
    monkeypatch.chdir(tmp_path)
    params = _params(tmp_path, edit)
    # joint.train: without the check it would get past the params and fail on tokens/ instead
    line = _error(capsys, ["joint.train", "--params", str(params)])
    assert line.startswith(f"error: {params}: {message}"), line
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("exp, experiment", [("seg-default", "joint-seg"),
                                             ("cityscapes", "cityscapes")])
def test_the_joint_pipelines_params_load(exp, experiment):
    schema = stages.resolve("joint.train").schema  # what the runner validates them with
    p = load_params(REPO / "pipelines" / exp / "params.yaml", schema=schema)
    assert p.tracking.experiment == experiment and p.model["preset"]
    assert p.sample.top_p == (0.9 if exp == "cityscapes" else 1.0)  # DI Tab. S7 / off


def _nucleus(probs: np.ndarray, p: float) -> set[int]:
    """Holtzman et al.'s nucleus, computed independently: the most likely tokens, in order,
    while the mass before a token is still below p."""
    order = np.argsort(-probs, kind="stable")
    before = np.concatenate([[0.0], np.cumsum(probs[order])[:-1]])
    return {int(i) for i, b in zip(order, before, strict=True) if b < p}


def test_evaluate_samples_every_task_within_the_top_p_nucleus():
    layout = JointLayout(image_shape=(2, 3), image_vocab=5, mask_shape=(1, 3), num_classes=4)
    raw = torch.randn(1, layout.seq_len, layout.vocab_size,
                      generator=torch.Generator().manual_seed(7)) * 1.5
    logits = restrict_logits(layout, raw)  # position-only logits: each draw's nucleus is known
    probs = logits[0].double().softmax(-1).numpy()
    top_p, n = 0.6, 48
    nuclei = [_nucleus(probs[i], top_p) for i in range(layout.seq_len)]

    def den(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return logits.expand(x.shape[0], -1, -1)

    def outside(img: torch.Tensor, mask: torch.Tensor) -> int:
        x = layout.combine(img.reshape(len(img), -1), mask.reshape(len(mask), -1))
        return sum(int(x[b, i]) not in nuclei[i] for b in range(len(x))
                   for i in range(layout.seq_len))

    kw = dict(method="mdm", steps=4, seg_method="mdm", seg_steps=4, batch_size=16)
    full = _sample_batches(den, layout, "joint", n, SampleSection(**kw))
    nuc = _sample_batches(den, layout, "joint", n, SampleSection(**kw, top_p=top_p))
    assert outside(*full) > 0  # without the filter, tokens outside the nucleus do occur
    assert outside(*nuc) == 0 and not torch.equal(full[0], nuc[0])
    image = torch.zeros(n, *layout.image_shape, dtype=torch.long)  # given, kept fixed
    _, seg = _sample_batches(den, layout, "image_to_mask", n, SampleSection(**kw, top_p=top_p),
                             seg=True, image=image)
    ids = seg.reshape(n, -1) + layout.image_vocab  # mask classes → the combined vocabulary
    assert all(int(ids[b, i]) in nuclei[layout.image_len + i]
               for b in range(n) for i in range(ids.shape[1]))


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist.DEFAULT_ROOT.is_dir(),
                    reason="apt-get install dataset-fashion-mnist")
def test_interrupted_tokenize_stops_train_in_the_pipeline_folder(tmp_path, monkeypatch, capsys):
    work = tmp_path / "seg"
    work.mkdir()
    shutil.copy(SEG / "dvc.yaml", work / "dvc.yaml")
    params = _params(work, {
        "data": {"max_train": 16, "max_test": 4},
        "tokenizer": {"kind": "pixel", "levels": 4},
        "model": {"dim": 32, "depth": 1, "heads": 2},
        "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "ckpt_every": 2},
    })
    monkeypatch.chdir(work)
    argv = ["--params", str(params)]
    threads = torch.get_num_threads()
    try:
        def interrupted(*a: Any, **kw: Any) -> Any:
            raise KeyboardInterrupt  # as a killed stage would stop mid-way

        with monkeypatch.context() as m:
            m.setattr(pretokenized, "fit_tokenizer", interrupted)
            with pytest.raises(KeyboardInterrupt):
                stages.main(["joint.tokenize", *argv])
        marker = json.loads((work / ".unmask/stages/tokenize.json").read_text())
        assert marker["status"] == "failed" and marker["outputs"] == ["tokens"]

        line = _error(capsys, ["joint.train", *argv])
        assert "stage 'tokenize' failed, so its outputs (tokens) may be half-written" in line
        assert not (work / "models").exists()

        # rerun tokenize: the marker says complete and train goes ahead
        meta = stages.main(["joint.tokenize", *argv])
        assert meta["counts"] == {"train": 16, "test": 4} and meta["image_vocab"] == 4
        assert json.loads((work / ".unmask/stages/tokenize.json").read_text())["status"] == \
            "complete"
        assert stages.main(["joint.train", *argv])["step"] == 2
        assert (work / "models" / "model.pt").is_file()
    finally:
        torch.set_num_threads(threads)


def test_fid_without_inception_weights_is_unavailable_with_the_reason(monkeypatch):
    images = np.zeros((4, 8, 8), np.uint8)
    off = pretokenized_evaluate.fid_result(images, images, "k", enabled=False,
                                           name="fid_mask_to_image")
    assert (off.name, off.value, off.available) == ("fid_mask_to_image", None, False)
    assert "evaluate.fid: false" in off.reason
    monkeypatch.setattr(pretokenized_evaluate, "fid_weights_available", lambda: False)
    res = pretokenized_evaluate.fid_result(images, images, "k", name="fid_mask_to_image")
    assert res.value is None and not res.available and res.reason == UNAVAILABLE_REASON
