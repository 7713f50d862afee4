"""Kill and resume: a training process SIGKILLed at a random step (after its first checkpoint)
resumes from its newest valid checkpoint and continues with a loss curve bit-identical to an
uninterrupted run (CPU, deterministic algorithms). Checkpoints are atomic, the last N are kept,
and a truncated or corrupt one is detected by its checksum and skipped with a warning naming
it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from reliability_helpers import PYTHON, subprocess_env

from unmask.training import list_checkpoints, read_checkpoint
from unmask.training.checkpoint import CorruptCheckpointError, latest_checkpoint

WORKER = Path(__file__).with_name("train_worker.py")
STEPS = 12  # train_worker.STEPS; checkpoints every 2 steps, keep_last=2

pytestmark = pytest.mark.timeout(300)


def _curve(log: Path) -> list[tuple[int, float]]:
    if not log.is_file():
        return []
    return [(r["step"], r["loss"]) for r in map(json.loads, log.read_text().splitlines())]


def _worker(out: Path, log: Path, pause: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, str(WORKER), str(out), str(log), "--pause", str(pause)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # three training processes (~40 s)
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path):
    ref = _worker(tmp_path / "ref", tmp_path / "ref.jsonl")
    assert ref.wait(timeout=240) == 0, ref.stderr.read()
    reference = _curve(tmp_path / "ref.jsonl")
    assert [s for s, _ in reference] == list(range(1, STEPS + 1))

    kill_after = random.SystemRandom().randrange(3, STEPS - 1)  # ≥ 1 checkpoint (step 2) done
    why = f"killed after logging step {kill_after}"
    proc = _worker(tmp_path / "run", tmp_path / "killed.jsonl", pause=0.3)
    deadline = time.monotonic() + 200
    while len(_curve(tmp_path / "killed.jsonl")) < kill_after:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, why
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    killed = _curve(tmp_path / "killed.jsonl")
    assert killed == reference[: len(killed)], why

    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert 1 <= len(ckpts) <= 2, (why, ckpts)  # keep_last=2
    # Whatever the kill interrupted, the newest checkpoint that verifies is complete.
    found = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert found is not None, why
    resumed_from = int(found[1]["step"])
    assert 2 <= resumed_from <= len(killed), why

    res = _worker(tmp_path / "run", tmp_path / "resumed.jsonl")
    assert res.wait(timeout=240) == 0, res.stderr.read()
    resumed = _curve(tmp_path / "resumed.jsonl")
    assert resumed == reference[resumed_from:], why  # bitwise-equal floats, steps after it
    final = read_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1])
    expected = read_checkpoint(list_checkpoints(tmp_path / "ref" / "checkpoints")[-1])
    assert final["step"] == expected["step"] == STEPS
    for k, v in expected["model"].items():
        assert (final["model"][k] == v).all(), k


@pytest.mark.slow
def test_truncated_and_corrupt_checkpoints_fall_back_with_a_warning(tmp_path):
    out = tmp_path / "run"
    proc = _worker(out, tmp_path / "a.jsonl")
    assert proc.wait(timeout=240) == 0, proc.stderr.read()
    ckpt_dir = out / "checkpoints"
    ckpts = list_checkpoints(ckpt_dir)
    assert [p.name for p in ckpts] == ["ckpt-00000010.pt", "ckpt-00000012.pt"]  # last N=2
    assert not [p for p in ckpt_dir.iterdir() if p.name.endswith(".tmp")]  # atomic writes

    newest, older = ckpts[-1], ckpts[-2]
    blob = newest.read_bytes()
    newest.write_bytes(blob[: len(blob) // 3])  # a torn write
    with pytest.raises(CorruptCheckpointError, match="ckpt-00000012.pt is corrupt"):
        read_checkpoint(newest)
    with pytest.warns(UserWarning, match=r"ckpt-00000012\.pt.*falling back to ckpt-00000010"):
        path, state = latest_checkpoint(ckpt_dir)
    assert path == older and state["step"] == 10

    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0xFF  # bit rot: same size, other hash
    newest.write_bytes(bytes(flipped))
    with pytest.warns(UserWarning, match=r"ckpt-00000012\.pt is corrupt: sha256"):
        assert latest_checkpoint(ckpt_dir)[0] == older

    # Resuming continues from step 10 and reproduces steps 11-12 of the first run.
    first = _curve(tmp_path / "a.jsonl")
    proc = _worker(out, tmp_path / "b.jsonl")
    assert proc.wait(timeout=240) == 0
    assert "falling back to ckpt-00000010.pt" in proc.stderr.read()
    assert _curve(tmp_path / "b.jsonl") == first[10:]
