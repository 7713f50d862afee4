"""DVC remote round trip of the default pipeline (issue 17 item 4): the real ``dvc.yaml`` and
``.dvc/config`` (default remote ``~/.cache/unmask/dvc-remote``, here under a scratch ``HOME``),
``params.yaml`` shrunk by overrides. Clone A reproduces, commits and pushes; a fresh git clone B
pulls and is up to date without recomputing anything: the same bytes for the prepared data, the
token shards, the tokenizer and the checkpoint, a clean ``dvc status``, a no-op ``dvc repro``."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from unmask.data import fashion_mnist
from unmask.scratch import dvc_bin, run_dvc, scratch_pipeline

REPO = Path(__file__).resolve().parents[1]
SHRINK = [
    "data.n_train=256",
    "data.n_val=32",
    "data.n_test=64",
    "tokenizer.vq.steps=20",
    "tokenizer.vq.n_train=256",
    "tokenizer.vq.codebook_size=32",
    "model.dim=32",
    "model.depth=1",
    "model.heads=2",
    "train.steps=4",
    "train.batch_size=32",
    "train.warmup_steps=1",
    "train.log_every=2",
    "train.ckpt_every=2",
    "sample.steps=4",
    "sample.n_per_class=2",
    "evaluate.n_sequences=32",
    "evaluate.num_samples=1",
    "evaluate.batch_size=32",
    "evaluate.fid=false",
    "tracking.enabled=false",
]
#: What a second machine must get from the remote instead of recomputing it.
SHARED = ["data/prepared", "data/tokens", "models/tokenizer.pt", "models/model.pt", "samples"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not fashion_mnist.DEFAULT_ROOT.is_dir(),
                       reason="apt-get install dataset-fashion-mnist"),
    pytest.mark.skipif(not dvc_bin().exists(), reason="dvc is not installed"),
]


def _git(args: list[str], cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   cwd=cwd, check=True, capture_output=True)


def _digest(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(f.relative_to(path.parent)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in files}


def test_push_then_pull_in_a_fresh_clone_recomputes_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))  # the committed remote url is ~/.cache/unmask/...
    a = scratch_pipeline(REPO, None, tmp_path / "a", SHRINK)
    for name in (".dvc/config", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, a / name)
    _git(["add", "-A"], a)
    _git(["commit", "-q", "-m", "code"], a)
    run_dvc(["repro"], a)
    _git(["add", "-A"], a)  # dvc.lock, metrics/reports (cache: false); cached outs are ignored
    _git(["commit", "-q", "-m", "results"], a)
    run_dvc(["push"], a)
    remote = home / ".cache" / "unmask" / "dvc-remote"
    assert any((remote / "files" / "md5").rglob("*")), "nothing pushed to the default remote"

    b = tmp_path / "b"
    _git(["clone", "-q", str(a), str(b)], tmp_path)
    assert not any((b / p).exists() for p in SHARED)  # not in git: only in the remote
    assert "up to date" not in run_dvc(["status"], b).stdout
    run_dvc(["pull"], b)
    for p in SHARED:
        assert _digest(b / p) == _digest(a / p), p
    assert "Data and pipelines are up to date" in run_dvc(["status"], b).stdout
    again = run_dvc(["repro"], b).stdout
    assert "Running stage" not in again, again
