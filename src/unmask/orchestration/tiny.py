"""The real default project, shrunk only by overrides — for tests, smoke runs and benchmarks.

There is no separate sandbox configuration: everything here starts from the repo's own
``params.yaml`` (the learned VQ tokenizer included), ``dvc.yaml`` and ``flows/ablations.yaml``
and changes only the sizes in :data:`TINY` / :data:`TINY_EVAL`, so whatever breaks the real
loop breaks these too.

- :func:`clone_project` — what a user has: a ``git clone`` of the repo whose ``params.yaml`` is
  edited by the overrides (then ``dvc repro`` there, ``unmask stack up`` there, ...);
- :func:`make_project` — the same files without git, with the pipeline stages run in-process
  (prepare → tokenizer → tokenize → train by default), for tests that need the outputs fast.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from unmask.config import load_params, parse_overrides
from unmask.dicts import deep_merge
from unmask.stages import run as run_stage

__all__ = ["TINY", "TINY_EVAL", "shrink", "clone_project", "make_project"]

#: params.yaml overrides: the default pipeline in about a minute of CPU time.
TINY: dict[str, Any] = {
    "data.n_train": 512, "data.n_val": 64, "data.n_test": 100,
    "tokenizer.vq.steps": 30, "tokenizer.vq.n_train": 512,
    "model.dim": 32, "model.depth": 1, "model.heads": 2,
    "train.steps": 20, "train.batch_size": 32, "train.warmup_steps": 2, "train.log_every": 2,
    "train.ckpt_every": 10,
    "sample.steps": 8, "sample.n_per_class": 2, "sample.chain_frames": 3,
    "evaluate.n_sequences": 50, "evaluate.num_samples": 1, "evaluate.batch_size": 50,
    "evaluate.fid_num_samples": 20, "evaluate.fid_reference": 50,
}

#: flows/ablations.yaml overrides (nested): small scoring sets, no retries.
TINY_EVAL: dict[str, Any] = {
    "eval": {"n_per_class": 2, "fid_reference": 50, "fid_batch_size": 50, "nelbo_sequences": 16,
             "nelbo_samples": 1},
    "retries": 0,
}


def _repo() -> Path:
    return Path(__file__).resolve().parents[3]


def shrink(project: str | Path, overrides: Mapping[str, Any] | None = None,
           settings: Mapping[str, Any] | None = None) -> Path:
    """Apply :data:`TINY` (+ ``overrides``, dotted keys) to ``<project>/params.yaml`` and
    :data:`TINY_EVAL` (+ ``settings``, nested) to ``<project>/flows/ablations.yaml``, in place;
    the result is validated (:func:`unmask.config.load_params`). Returns ``project``."""

    project = Path(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    deep_merge(params, parse_overrides({**TINY, **(overrides or {})}))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    flows = yaml.safe_load((project / "flows/ablations.yaml").read_text())
    deep_merge(flows, TINY_EVAL)
    deep_merge(flows, dict(settings or {}))
    (project / "flows/ablations.yaml").write_text(yaml.safe_dump(flows, sort_keys=False))
    load_params(project / "params.yaml")
    return project


def _sync_worktree(repo: Path, dest: Path) -> None:
    """Bring ``repo``'s uncommitted changes (modified, deleted and untracked, not ignored files)
    into the clone ``dest``: the clone then holds the code the installed package runs."""
    def ls(*flags: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *flags], cwd=repo, check=True,
                             capture_output=True).stdout.decode()
        return [f for f in out.split("\0") if f]

    for f in ls("--deleted"):
        (dest / f).unlink(missing_ok=True)
    for f in ls("--modified", "--others", "--exclude-standard"):
        src = repo / f
        if src.is_file() and not src.is_symlink():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


def clone_project(dest: str | Path, *, repo: str | Path | None = None,
                  overrides: Mapping[str, Any] | None = None,
                  settings: Mapping[str, Any] | None = None) -> Path:
    """``git clone`` ``repo`` (default: this checkout) to ``dest``, carry over its uncommitted
    changes, and :func:`shrink` it; everything is committed in the clone so ``dvc`` sees a clean
    tree. Returns ``dest``."""
    repo, dest = Path(repo) if repo else _repo(), Path(dest)
    subprocess.run(["git", "clone", "-q", str(repo), str(dest)], check=True)
    _sync_worktree(repo, dest)
    shrink(dest, overrides, settings)
    git = ["git", "-c", "user.name=unmask", "-c", "user.email=unmask@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "working tree + tiny params"],
                   cwd=dest, check=True)
    return dest


def make_project(root: str | Path, *, overrides: Mapping[str, Any] | None = None,
                 settings: Mapping[str, Any] | None = None,
                 stages: Sequence[str] = ("prepare", "train-tokenizer", "tokenize", "train"),
                 repo: str | Path | None = None) -> Path:
    """The repo's ``params.yaml``, ``dvc.yaml`` and ``flows/ablations.yaml`` copied to ``root``
    and :func:`shrink` -ed, then ``stages`` run in-process in ``root`` (drop ``train`` for a
    project without a checkpoint). Returns ``root``."""

    root, repo = Path(root).resolve(), Path(repo) if repo else _repo()
    for f in ("params.yaml", "dvc.yaml", "flows/ablations.yaml"):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo / f, root / f)
    shrink(root, overrides, settings)
    loaded = load_params(root / "params.yaml")
    with contextlib.chdir(root):
        for stage in stages:
            run_stage(stage, loaded)
    return root
