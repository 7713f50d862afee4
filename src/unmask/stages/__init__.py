"""The default pipeline's stages (see ``dvc.yaml``): thin scripts over the library.

    prepare → tokenize → train → sample → evaluate → report

Each stage is ``python -m unmask.stages.<name> [--params params.yaml] [--set key=value ...]``
(or ``unmask stage <name>``); it reads the typed params and writes only below its own output
paths, which are the ``outs`` of the stage in ``dvc.yaml``. The paths are fixed here, relative to
the working directory (the repo root under ``dvc repro``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unmask.config import ConfigError, Params, TrackingConfig, load_params

__all__ = [
    "STAGES",
    "PATHS",
    "USER_ERRORS",
    "run_stage",
    "main",
    "user_errors",
    "make_tracker",
    "git_commit",
]

STAGES = ("prepare", "tokenize", "train", "sample", "evaluate", "report")


class _Paths:
    """Where each stage writes (relative to the working directory)."""

    prepared = Path("data/prepared")  # {train,val,test}.npz, manifest.json
    tokens = Path("data/tokens")  # {train,val,test}/ token shards
    run_dir = Path("runs/train")  # resumable training checkpoints (not a DVC out)
    models = Path("models")  # model.pt (final checkpoint), train.json
    samples = Path("samples")  # samples.npz, grid.png, chain.png, info.json
    metrics = Path("metrics")  # metrics.json, train_history.csv
    reports = Path("reports")  # index.html, metrics.csv

    @property
    def checkpoint(self) -> Path:
        return self.models / "model.pt"


PATHS = _Paths()


def _user_errors() -> tuple[type[BaseException], ...]:
    from unmask.data.fashion_mnist import IdxError
    from unmask.data.shards import ShardError
    from unmask.training import CorruptCheckpointError

    return (
        ConfigError,
        FileNotFoundError,
        ShardError,
        IdxError,
        CorruptCheckpointError,
        ValueError,
    )


USER_ERRORS = _user_errors()


def make_tracker(cfg: TrackingConfig) -> Any:
    """An MLflow :class:`~unmask.tracking.Tracker` (``$MLFLOW_TRACKING_URI`` or the local sqlite
    store under ``cfg.root``), or a :class:`~unmask.tracking.NullTracker` when disabled."""
    from unmask.tracking import NullTracker, Tracker

    return Tracker(root=cfg.root) if cfg.enabled else NullTracker()


def git_commit() -> str:
    """The working tree's commit (``+dirty`` when it has uncommitted changes), or 'unknown'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_stage(name: str, params: Params) -> Any:
    """Run stage ``name`` with already-loaded params."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; valid stages: {', '.join(STAGES)}")
    module = importlib.import_module(f"unmask.stages.{name}")
    return module.run(params)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user error (bad params, missing file or checkpoint, invalid value) into one line
    on stderr and exit status 2, without a traceback. ``UNMASK_DEBUG=1`` re-raises instead."""
    try:
        yield
    except USER_ERRORS as e:
        if os.environ.get("UNMASK_DEBUG"):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


def main(
    name: str, argv: Sequence[str] | None = None, run: Callable[[Params], Any] | None = None
) -> None:
    """Command-line entry of a stage module: ``--params`` and ``--set key=value`` overrides."""
    parser = argparse.ArgumentParser(prog=f"python -m unmask.stages.{name}")
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param, e.g. --set train.steps=100 (repeatable)",
    )
    args = parser.parse_args(argv)
    with user_errors():
        params = load_params(args.params, args.overrides)
        run(params) if run is not None else run_stage(name, params)
