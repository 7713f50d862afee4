"""An interrupted DVC stage leaves nothing a later stage could take for complete: the stage
guard (:mod:`unmask.stages.guard`) deletes a stage's old outputs before it runs
and marks it running; a later stage whose inputs come from an interrupted (or failed) one
refuses to start, naming it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from reliability_helpers import PYTHON, REPO, assert_user_error, run_cli, subprocess_env

from unmask.stages.guard import (
    IncompleteStageError,
    stage_guard,
    stage_outputs,
    stage_status,
)

SLOW = Path(__file__).with_name("slow_stage.py")


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    return tmp_path


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_stage_blocks_its_readers_until_rerun(project):
    (project / "samples").mkdir()
    (project / "samples" / "grid.png").write_bytes(b"an old, complete output")
    proc = subprocess.Popen(
        [PYTHON, str(SLOW), "sample", "--set", "tokenizer.kind=pixel"],
        cwd=project,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "WROTE", proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    # The stale output of the previous run is gone, the half-written one is marked as such.
    assert not (project / "samples" / "grid.png").exists()
    assert (project / "samples" / "samples.npz").exists()
    assert stage_status("sample", project) == "interrupted"
    marker = json.loads((project / ".unmask" / "stages" / "sample.json").read_text())
    assert marker["status"] == "running" and marker["outputs"] == ["samples"]

    # evaluate reads samples/: it refuses, naming the stage, its output and the fix.
    out = run_cli(["stage", "evaluate", "--set", "tokenizer.kind=pixel"], project)
    assert_user_error(out, "stage 'sample' was interrupted", "samples", "dvc repro sample")
    assert not (project / "metrics" / "metrics.json").exists()

    # Rerunning the stage (here: to completion) unblocks it.
    with stage_guard("sample", project):
        (project / "samples").mkdir()
        (project / "samples" / "samples.npz").write_bytes(b"complete")
    assert stage_status("sample", project) == "complete"
    out = run_cli(["stage", "evaluate", "--set", "tokenizer.kind=pixel"], project)
    assert out.returncode == 2 and "interrupted" not in out.stderr  # fails later: no tokens


def test_failed_stage_blocks_readers_and_unrelated_stages_run(project, monkeypatch):
    monkeypatch.chdir(project)
    with pytest.raises(RuntimeError, match="boom"), stage_guard("train"):
        Path("models").mkdir()
        Path("models/model.pt").write_bytes(b"half")
        raise RuntimeError("boom")
    assert stage_status("train") == "failed"
    for reader in ("sample", "evaluate", "report"):  # all read models/...
        with (
            pytest.raises(IncompleteStageError, match=r"stage 'train' failed.*models/"),
            stage_guard(reader),
        ):
            pass
    with stage_guard("prepare"):  # upstream of train: unaffected
        pass
    assert stage_status("prepare") == "complete"


def test_outputs_come_from_dvc_yaml_and_persist_is_kept(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  a:\n    cmd: python -m unmask.stages a\n    outs:\n      - out/a.bin\n"
        "      - keep.db:\n          persist: true\n"
        "    metrics:\n      - m.json:\n          cache: false\n"
        "  b:\n    cmd: x\n    deps:\n      - out\n"
        "  c:\n    cmd: y\n    outs:\n      - cdir\n"
    )
    monkeypatch.chdir(tmp_path)
    assert stage_outputs("a", tmp_path) == [
        (tmp_path / "out/a.bin", False),
        (tmp_path / "keep.db", True),
        (tmp_path / "m.json", False),
    ]
    Path("out").mkdir()
    for f in ("out/a.bin", "keep.db", "m.json"):
        Path(f).write_text("old")
    t0 = time.time()
    with stage_guard("a"):
        assert not Path("out/a.bin").exists() and not Path("m.json").exists()
        assert Path("keep.db").read_text() == "old"
        with (
            pytest.raises(IncompleteStageError, match="stage 'a' is still running"),
            stage_guard("b"),
        ):  # `out` holds a's output: b depends on a
            pass
    marker = json.loads(Path(".unmask/stages/a.json").read_text())
    assert marker["status"] == "complete" and marker["ended"] >= t0
    with stage_guard("b"):
        pass
    # A folder output is emptied, but a resumable write in progress (hidden .partial) stays.
    Path("cdir/.w.partial").mkdir(parents=True)
    Path("cdir/old.bin").write_text("old")
    with stage_guard("c"):
        assert [p.name for p in Path("cdir").iterdir()] == [".w.partial"]
    # No dvc.yaml: nothing to guard.
    os.remove("dvc.yaml")
    with stage_guard("a"):
        pass
    assert stage_status("b") == "complete"


def test_foreach_stages_are_guarded_per_option(tmp_path, monkeypatch):
    """`python -m unmask.stages fam.train --ell 2` is the dvc stage `train@2` of a foreach over
    params.yaml: it gets its own marker, and only `evaluate@2` depends on it."""
    (tmp_path / "params.yaml").write_text("fam:\n  ells: [1, 2]\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  train:\n    foreach: ${fam.ells}\n    do:\n"
        "      cmd: python -m unmask.stages fam.train --ell ${item}\n"
        "      outs:\n        - models/l${item}\n"
        "  evaluate:\n    foreach: ${fam.ells}\n    do:\n"
        "      cmd: python -m unmask.stages fam.evaluate --ell ${item}\n"
        "      deps:\n        - models/l${item}\n      outs:\n        - eval/l${item}\n"
    )
    monkeypatch.chdir(tmp_path)
    for ell in (1, 2):
        Path(f"models/l{ell}").mkdir(parents=True)
    assert stage_outputs("fam.evaluate", tmp_path, {"ell": 2}) == [(tmp_path / "eval/l2", False)]
    with stage_guard("fam.train", options={"ell": 2}):
        assert not Path("models/l2").exists() and Path("models/l1").exists()
        with (
            pytest.raises(IncompleteStageError, match="stage 'train@2' is still running"),
            stage_guard("fam.evaluate", options={"ell": 2}),
        ):
            pass
        with stage_guard("fam.evaluate", options={"ell": 1}):  # other ℓ: not its upstream
            pass
    assert stage_status("train@2") == "complete" and stage_status("evaluate@1") == "complete"
