"""Run a pipeline of this repository in a scratch git + DVC project (tests, smoke runs):
:func:`scratch_pipeline` copies it there, :func:`run_dvc` runs ``dvc`` hermetically."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from unmask.config import parse_overrides
from unmask.dicts import deep_merge
from unmask.runtime import service_env

__all__ = ["dvc_bin", "scratch_pipeline", "run_dvc"]


def dvc_bin() -> Path:
    """The ``dvc`` executable of this interpreter's environment (else the one on ``PATH``)."""
    local = Path(sys.executable).parent / "dvc"
    return local if local.exists() else Path(shutil.which("dvc") or local)


def scratch_pipeline(
    repo: str | Path,
    exp: str | None,
    dest: str | Path,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
) -> Path:
    """Copy ``pipelines/<exp>/`` (``dvc.yaml``, ``.gitignore``, ``params.yaml`` with
    ``overrides`` merged in, e.g. the fixture's data path) and ``src/`` of ``repo`` into a fresh
    git + DVC repository at ``dest`` and return ``dest``; ``pipelines/<exp>`` is its own DVC
    project there as in the repo, so ``dvc repro`` in it runs the pipeline on the fixture. With
    ``exp=None`` the repo-root ``dvc.yaml`` + ``params.yaml`` are copied to the root of ``dest``
    (plain ``dvc repro``). ``overrides`` are ``{"train.steps": 3}`` or ``["train.steps=3"]``."""


    repo, dest = Path(repo), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([str(dvc_bin()), "init", "-q"], cwd=dest, check=True)
    shutil.copytree(repo / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__"))
    names: tuple[str, ...] = ("dvc.yaml", ".gitignore")
    src, out = repo / "pipelines" / str(exp), dest / "pipelines" / str(exp)
    if exp is None:  # the root .gitignore is the developer's, not the pipeline's
        src, out, names = repo, dest, ("dvc.yaml",)
    out.mkdir(parents=True, exist_ok=exp is None)
    for name in names:
        if (src / name).is_file():
            shutil.copy(src / name, out / name)
    if exp is not None and (src / ".dvc").is_dir():  # its own DVC project, as in the repo
        subprocess.run([str(dvc_bin()), "init", "-q", "--subdir"], cwd=out, check=True)
        for name in (".dvc/config", ".dvcignore"):
            shutil.copy(src / name, out / name)
    params = deep_merge(yaml.safe_load((src / "params.yaml").read_text()),
                        parse_overrides(overrides))
    (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


#: Variables a scratch run must not inherit: its MLflow store and weights are its own.
_HERMETIC_UNSET = ("MLFLOW_TRACKING_URI", "UNMASK_I3D_PATH")


def run_dvc(args: list[str], cwd: str | Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """``dvc *args`` in ``cwd`` with telemetry off, one OpenMP thread, this environment's
    executables first on ``PATH`` (the stages' ``python``), and no inherited MLflow tracking
    URI or I3D weights. Raises ``RuntimeError`` with the tails of stdout and stderr unless it
    exits 0; returns the completed process (text ``stdout`` / ``stderr``)."""
    bin_dir = str(Path(sys.executable).parent)
    env = service_env(
        {"OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    )
    for key in _HERMETIC_UNSET:
        env.pop(key, None)
    cmd = [str(dvc_bin()), *args]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(
            f"dvc {' '.join(args)} (in {cwd}) exited {out.returncode}:\n"
            f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )
    return out
