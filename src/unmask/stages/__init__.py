"""The default pipeline's stages (see ``dvc.yaml``): thin scripts over the library.

    prepare → tokenizer → tokenize → train → sample → evaluate → report

(``tokenizer`` trains the VQ-VAE when ``tokenizer.kind: vq``.) Every stage that needs the
image tokenizer gets it from :func:`load_tokenizer`.

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
    "load_tokenizer",
    "main",
    "guarded_run",
    "user_errors",
    "make_tracker",
    "git_commit",
]

STAGES = ("prepare", "tokenizer", "tokenize", "train", "sample", "evaluate", "report")


class _Paths:
    """Where each stage writes (relative to the working directory)."""

    prepared = Path("data/prepared")  # {train,val,test}.npz, manifest.json
    tokens = Path("data/tokens")  # {train,val,test}/ token shards
    tokenizer_metrics = Path("metrics/tokenizer.json")  # PSNR, codebook usage (held out)
    tokenizer_history = Path("metrics/tokenizer_history.csv")  # VQ-VAE training curve
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
    from unmask.tracking import TrackingUnavailableError
    from unmask.training import CorruptCheckpointError, NonFiniteLossError

    return (
        ConfigError,
        FileNotFoundError,
        ShardError,
        IdxError,
        CorruptCheckpointError,
        ValueError,
        TrackingUnavailableError,
        NonFiniteLossError,
    )


USER_ERRORS = _user_errors()


def load_tokenizer(params: Params) -> Any:
    """The pipeline's image tokenizer: the per-pixel quantiser (``tokenizer.kind: pixel``) or
    the VQ-VAE trained by the ``tokenizer`` stage, loaded from ``tokenizer.path`` and checked
    against the ``tokenizer.vq`` section (``kind: vq``). The one place every stage (tokenize,
    train, sample, evaluate, report) gets it from, so samples and held-out data are decoded
    through the same tokenizer; its ``hash`` is checked against the token shards' manifests."""
    return params.tokenizer.build()


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
        from unmask.runtime import configure_threads

        configure_threads()  # $UNMASK_THREADS or 1: never the machine's load
        params = load_params(args.params, args.overrides)
        guarded_run(name, params, run)


def guarded_run(name: str, params: Params, run: Callable[[Params], Any] | None = None) -> Any:
    """Run a stage as its command line does: a configured MLflow server must answer first
    (one clear error otherwise), and the stage runs under
    :func:`~unmask.orchestration.stage_guard.stage_guard` (an interrupted upstream stage is an
    error; an interrupted run of this one never passes for complete)."""
    from unmask.orchestration.stage_guard import stage_guard

    tracking = getattr(params, "tracking", None)
    if tracking is not None and tracking.enabled:
        make_tracker(tracking).check()
    with stage_guard(name):
        return run(params) if run is not None else run_stage(name, params)
