"""Shared harness of the pipeline tests: tiny model / training overrides, a random SD-VQ-F8-shaped
VQModel, a pipeline copied into a scratch git + DVC repo and reproduced there
(:func:`unmask.scratch.scratch_pipeline` + :func:`~unmask.scratch.run_dvc`), and
a pipeline's stage CLI run in a scratch working directory with its own ``params.yaml``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unmask.data import fashion_mnist
from unmask.data.fixtures import write_random_vqmodel
from unmask.scratch import dvc_bin, run_dvc, scratch_pipeline

REPO = Path(__file__).resolve().parents[2]

#: A tiny model trained for a few CPU steps, without MLflow.
_TINY_MODEL = {
    "model.preset": "tiny",
    "model.dim": 32,
    "train.warmup_steps": 1,
    "train.device": "cpu",
    "tracking.enabled": False,
}
#: Overrides of the image pipelines reproduced with DVC (one block, 3 steps of batch 4).
_TINY_DVC = {
    **_TINY_MODEL,
    "model.depth": 1,
    "model.heads": 2,
    "train.steps": 3,
    "train.batch_size": 4,
    "train.log_every": 1,
    "train.ckpt_every": 3,
}
#: Overrides of the joint / video stage CLIs (two blocks, batch 2, 4 sampling steps, no FID).
_TINY_STAGES = {
    **_TINY_MODEL,
    "model.depth": 2,
    "train.batch_size": 2,
    "sample.batch_size": 2,
    "sample.steps": 4,
    "evaluate.fid": False,
}


#: Overrides of the Fashion-MNIST pipelines reproduced with DVC (MLflow store in the pipeline).
_TINY_FMNIST = {
    "tokenizer.vq.steps": 20,
    "model.dim": 32,
    "model.heads": 2,
    "train.steps": 4,
    "train.warmup_steps": 1,
    "train.ckpt_every": 2,
    "sample.steps": 4,
    "evaluate.fid": False,
    "tracking.root": "mlruns",
}


@pytest.fixture
def tiny() -> dict[str, Any]:
    """Overrides shrinking an image pipeline's model and training to seconds on a CPU."""
    return dict(_TINY_DVC)


@pytest.fixture
def sd_vq_f8(tmp_path: Path) -> Path:
    """A random diffusers ``VQModel`` with SD-VQ-F8's structure (16 384 codes, f = 8)."""
    pytest.importorskip("diffusers")
    return write_random_vqmodel(tmp_path / "sd-vq-f8")


@pytest.fixture
def tiny_sd_vq(tiny: dict[str, Any], sd_vq_f8: Path) -> dict[str, Any]:
    """:func:`tiny` + 64² images tokenized on the CPU by the random :func:`sd_vq_f8` (8×8)."""
    return {
        **tiny,
        "data.image_size": 64,
        "data.batch_size": 4,
        "tokenizer.path": str(sd_vq_f8),
        "tokenizer.device": "cpu",
    }


@pytest.fixture
def tiny_fashion_mnist() -> dict[str, Any]:
    """Overrides shrinking a Fashion-MNIST pipeline; skips without the Debian dataset."""
    if not fashion_mnist.DEFAULT_ROOT.is_dir():
        pytest.skip("apt-get install dataset-fashion-mnist")
    return dict(_TINY_FMNIST)


@pytest.fixture
def reproduce(tmp_path: Path) -> Callable[..., Path]:
    """``reproduce(exp, overrides, outputs=())``: copy ``pipelines/<exp>`` with ``overrides``
    into a scratch git + DVC repo, ``dvc repro`` it, check that each of ``outputs`` (paths in
    ``pipelines/<exp>``) is a file, and return the scratch repo's root."""

    if not dvc_bin().exists():
        pytest.skip("dvc is not installed")

    def run(exp: str, overrides: Mapping[str, Any], outputs: Iterable[str] = ()) -> Path:
        root = scratch_pipeline(REPO, exp, tmp_path / "repo", overrides)
        run_dvc(["repro"], root / "pipelines" / exp)  # its own DVC project
        for path in outputs:
            assert (root / "pipelines" / exp / path).is_file(), path
        return root

    return run


@pytest.fixture
def no_op_repro() -> Callable[[Path, str], None]:
    """``no_op_repro(root, exp)`` asserts that a second ``dvc repro`` runs no stage."""

    def check(root: Path, exp: str) -> None:
        again = run_dvc(["repro"], root / "pipelines" / exp).stdout
        assert "didn't change" in again and "Running stage" not in again

    return check


@pytest.fixture
def stage_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Callable[[str], Any]]]:
    """``stage_cli(main, exp, overrides)`` → ``run(stage)``: ``main([stage, "--params",
    pipelines/<exp>/params.yaml, "--set", k=v, ...])`` (``main`` = :func:`unmask.stages.main`,
    ``stage`` a registered name such as ``joint.train``) with the tiny stage overrides plus
    ``overrides``, in the working directory ``tmp_path/work`` (where the stages write), on one
    CPU thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def bind(main: Callable[[list[str]], Any], exp: str, overrides: Mapping[str, Any]):
        sets = {**_TINY_STAGES, **overrides}
        argv = ["--params", str(REPO / "pipelines" / exp / "params.yaml")]
        for key, value in sets.items():
            text = str(value) if isinstance(value, (str, Path)) else json.dumps(value)
            argv += ["--set", f"{key}={text}"]
        return lambda stage: main([stage, *argv])

    yield bind
    torch.set_num_threads(threads)


def _check_sample_and_evaluate(out: Path, run: str, captions: list[str], image_size: int) -> None:
    """The sample stage drew one image per held-out caption (grid, info, npz with the held-out
    real images) and evaluate reported FID (a number, or unavailable with a reason) and the
    CLIP score unavailable with its reason (no open_clip checkpoint configured)."""
    d = out / "samples" / run
    assert (d / "grid.png").is_file()
    info = json.loads((d / "info.json").read_text())
    assert info["captions"] == captions and info["n_samples"] == len(captions)
    assert info["cfg_scale"] == 1.5 and info["checkpoint_step"] == 3
    with np.load(d / "samples.npz") as z:
        assert z["captions"].tolist() == captions
        assert z["images"].shape == (len(captions), image_size, image_size, 3)
        assert z["images"].dtype == np.uint8 and z["tokens"].shape == (len(captions), 8, 8)
        assert z["reference"].shape == z["images"].shape
        assert z["tokens"].min() >= 0 and z["tokens"].max() < 16384  # no [MASK] left
    ev = json.loads((out / "metrics" / f"evaluate-{run}.json").read_text())
    assert ev["num_samples"] == len(captions)
    if ev["fid"] is None:
        assert ev["unavailable"]["fid"]
    else:
        assert np.isfinite(ev["fid"]) and ev["fid"] >= 0 and "fid" not in ev["unavailable"]
    assert ev["clip_score"] is None
    reason = ev["unavailable"]["clip_score"]
    assert "open_clip" in reason or "CLIP checkpoint" in reason


@pytest.fixture
def check_sample_and_evaluate() -> Callable[[Path, str, list[str], int], None]:
    """The text-to-image pipelines' (coco, cc12m) sample + evaluate checks."""
    return _check_sample_and_evaluate
