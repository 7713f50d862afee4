"""Issue 22 / 17 on the default pipeline (the repo's params.yaml, shrunk by overrides only):

* every stage run twice from scratch — with the global RNGs left in different states before
  each run, as two processes would — writes byte-identical DVC outputs (tokenizer, token
  shards, checkpoint, train summary and curve, samples) and the same metrics;
* ``python -m unmask.stages train`` SIGKILLed after its first checkpoint and rerun ends with the
  bytes of an uninterrupted run;
* a behaviour-changing edit of the code (a copy of the package with a different lr schedule)
  makes the stage start fresh, with a message, and train a different model; rerunning the same
  code then resumes at the final step and trains nothing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from determinism_utils import assert_same_files, assert_same_tensors, load_state

from unmask.config import load_params
from unmask.data import fashion_mnist
from unmask.stages import run as run_stage

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.n_train=256",
    "data.n_val=32",
    "data.n_test=64",
    "tokenizer.vq.steps=20",
    "tokenizer.vq.n_train=256",
    "tokenizer.vq.codebook_size=32",
    "model.dim=32",
    "model.depth=1",
    "model.heads=2",
    "train.steps=6",
    "train.batch_size=32",
    "train.warmup_steps=1",
    "train.log_every=2",
    "train.ckpt_every=3",
    "sample.steps=4",
    "sample.n_per_class=2",
    "sample.chain_frames=3",
    "evaluate.n_sequences=32",
    "evaluate.num_samples=1",
    "evaluate.batch_size=32",
    "evaluate.fid=false",
    "tracking.enabled=false",
]
#: What DVC hashes, up to the evaluate metrics (compared as numbers below).
OUTPUTS = [
    "data/prepared",
    "data/tokens",
    "models/tokenizer.pt",
    "metrics/tokenizer.json",
    "metrics/tokenizer_history.csv",
    "models/model.pt",
    "models/model.pt.sha256",
    "models/train.json",
    "metrics/train_history.csv",
    "samples/samples.npz",
    "samples/grid.png",
    "samples/chain.png",
]

pytestmark = pytest.mark.skipif(
    not fashion_mnist.DEFAULT_ROOT.is_dir(), reason="apt-get install dataset-fashion-mnist"
)


def _run(stages: list[str], work: Path, extra: list[str] = (), rng_seed: int = 0) -> None:
    old = Path.cwd()
    os.chdir(work)
    try:
        params = load_params(REPO / "params.yaml", [*TINY, *extra])
        for k, name in enumerate(stages):
            # each DVC stage is its own process: whatever RNG state it starts in must not matter
            torch.manual_seed(rng_seed + 7919 * k)
            random.seed(rng_seed + k)
            np.random.seed(rng_seed + k)
            run_stage(name, params)
    finally:
        os.chdir(old)


def _no_wall_clock(d: dict) -> dict:
    # stages/evaluate.py and samples/info.json still carry sampling seconds (owned elsewhere)
    return {k: v for k, v in d.items() if "seconds" not in k}


@pytest.mark.slow
def test_default_pipeline_twice_gives_identical_outputs(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    stages = ["prepare", "train-tokenizer", "tokenize", "train", "sample", "evaluate"]
    for i, work in enumerate(runs):
        work.mkdir()
        _run(stages, work, rng_seed=1000 + i)
    a, b = runs
    n = assert_same_tensors(load_state(a / "models/model.pt"), load_state(b / "models/model.pt"),
                            at_least=20)
    assert n >= 20
    assert_same_tensors(load_state(a / "models/tokenizer.pt"),
                        load_state(b / "models/tokenizer.pt"), at_least=5)
    assert_same_files(a, b, *OUTPUTS)
    train = json.loads((a / "models/train.json").read_text())
    assert not {"elapsed_s", "tokens_per_s"} & set(train)  # wall clock: runs/timings only
    assert json.loads((a / "runs/timings/train.json").read_text())["elapsed_s"] > 0
    assert "tokens_per_s" not in (a / "metrics/train_history.csv").read_text()
    assert "train_seconds" not in json.loads((a / "metrics/tokenizer.json").read_text())
    ma = json.loads((a / "metrics/metrics.json").read_text())
    mb = json.loads((b / "metrics/metrics.json").read_text())
    assert "nelbo_bpt" in ma and _no_wall_clock(ma) == _no_wall_clock(mb)
    ia = json.loads((a / "samples/info.json").read_text())
    ib = json.loads((b / "samples/info.json").read_text())
    assert _no_wall_clock(ia) == _no_wall_clock(ib)


# -- the stage as a process: kill and resume, code edits ---------------------------------------
def _stage_env(src: Path = REPO / "src") -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "UNMASK_THREADS": "1"}
    env.pop("UNMASK_DEBUG", None)
    return env


def _train_cmd(extra: list[str]) -> list[str]:
    sets = [a for kv in [*TINY, *extra] for a in ("--set", kv)]
    return [sys.executable, "-m", "unmask.stages", "train", "--params", str(REPO / "params.yaml"),
            *sets]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Prepared data, tokenizer and token shards of the tiny default pipeline."""
    work = tmp_path_factory.mktemp("inputs")
    _run(["prepare", "train-tokenizer", "tokenize"], work)
    return work


def _workdir(inputs: Path, dest: Path) -> Path:
    dest.mkdir()
    shutil.copytree(inputs / "data", dest / "data")
    (dest / "models").mkdir()
    shutil.copyfile(inputs / "models/tokenizer.pt", dest / "models/tokenizer.pt")
    return dest


LONG = ["train.steps=300", "train.ckpt_every=20", "train.log_every=10", "train.keep_last=3"]


@pytest.mark.slow
def test_train_stage_killed_after_first_checkpoint_resumes_bit_exactly(inputs, tmp_path):
    clean = _workdir(inputs, tmp_path / "clean")
    subprocess.run(_train_cmd(LONG), cwd=clean, env=_stage_env(), check=True,
                   capture_output=True, timeout=900)

    killed = _workdir(inputs, tmp_path / "killed")
    ckpts = killed / "runs/train/checkpoints"
    proc = subprocess.Popen(_train_cmd(LONG), cwd=killed, env=_stage_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list(ckpts.glob("ckpt-*.pt")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    assert not (killed / "models/model.pt").exists()
    first = sorted(ckpts.glob("ckpt-*.pt"))
    assert first and int(first[-1].stem.split("-")[1]) < 300  # interrupted mid-run

    res = subprocess.run(_train_cmd(LONG), cwd=killed, env=_stage_env(), check=True,
                         capture_output=True, text=True, timeout=900)
    assert "starting fresh" not in res.stderr  # the same code, params and data: resumed
    assert_same_tensors(load_state(clean / "models/model.pt"),
                        load_state(killed / "models/model.pt"), at_least=20)
    assert_same_files(clean, killed, "models/model.pt", "models/model.pt.sha256",
                      "models/train.json", "metrics/train_history.csv")


def _edited_copy(dest: Path) -> Path:
    """A copy of the package whose cosine lr schedule is halved: a behaviour change."""
    src = dest / "src"
    shutil.copytree(REPO / "src" / "unmask", src / "unmask",
                    ignore=shutil.ignore_patterns("__pycache__"))
    loop = src / "unmask/training/loop.py"
    text = loop.read_text()
    old = "return 0.5 * (1.0 + math.cos(math.pi * p))"
    assert text.count(old) == 1
    loop.write_text(text.replace(old, "return 0.25 * (1.0 + math.cos(math.pi * p))"))
    return src


@pytest.mark.slow
def test_code_edit_starts_fresh_and_unchanged_rerun_resumes(inputs, tmp_path):
    work = _workdir(inputs, tmp_path / "work")
    edited = _edited_copy(tmp_path / "edited")
    cmd = _train_cmd([])

    def run(src: Path) -> str:
        return subprocess.run(cmd, cwd=work, env=_stage_env(src), check=True,
                              capture_output=True, text=True, timeout=900).stderr

    run(REPO / "src")
    before = load_state(work / "models/model.pt")
    ckpt = work / "runs/train/checkpoints/ckpt-00000006.pt"
    assert ckpt.is_file()

    err = run(edited)  # behaviour-changing code edit: never resume the old run
    assert "starting fresh" in err and "code" in err
    after = load_state(work / "models/model.pt")
    with pytest.raises(AssertionError, match="tensors differ"):
        assert_same_tensors(before["model"], after["model"])

    stamp = ckpt.stat().st_mtime_ns
    history = (work / "runs/train/history.jsonl").read_text()
    err = run(edited)  # unchanged rerun: resumes at the final step, trains nothing
    assert "starting fresh" not in err
    assert ckpt.stat().st_mtime_ns == stamp
    assert (work / "runs/train/history.jsonl").read_text() == history
    assert_same_tensors(after, load_state(work / "models/model.pt"), at_least=20)
