"""A small self-contained project for smoke runs, tests and benchmarks of the orchestration.

:func:`make_project` writes, under ``root``, a shrunk copy of the repo's ``params.yaml``, the
``prepare`` and ``tokenize`` stage outputs (a few hundred Fashion-MNIST images), a checkpoint
trained for a few steps (``models/model.pt``) and a copy of ``flows/ablations.yaml`` with tiny
scoring settings — everything the ``ablations`` and ``train`` flows read, in seconds on a CPU.
Point a flow at it with ``workdir=<root>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from unmask.dicts import deep_merge

__all__ = ["SHRINK", "TINY_EVAL", "make_project"]

#: params.yaml overrides of the sandbox.
SHRINK: dict[str, Any] = {
    "data.n_train": 256, "data.n_val": 32, "data.n_test": 64,
    "tokenizer.kind": "pixel",  # the learned VQ tokenizer needs the `tokenizer` stage first
    "model.dim": 32, "model.depth": 1, "model.heads": 2,
    "train.steps": 4, "train.batch_size": 32, "train.warmup_steps": 1, "train.log_every": 2,
    "train.ckpt_every": 2,
    "sample.steps": 4, "sample.n_per_class": 1, "sample.chain_frames": 3,
    "evaluate.n_sequences": 32, "evaluate.num_samples": 1, "evaluate.batch_size": 32,
    "tracking.enabled": False,
}

#: flows/ablations.yaml overrides of the sandbox.
TINY_EVAL: dict[str, Any] = {
    "eval": {"n_per_class": 1, "fid_reference": 20, "fid_batch_size": 32, "nelbo_sequences": 16,
             "nelbo_samples": 1},
    "retries": 0,
}


def _repo() -> Path:
    return Path(__file__).resolve().parents[3]


def make_project(root: str | Path, *, overrides: Mapping[str, Any] | None = None,
                 settings: Mapping[str, Any] | None = None,
                 stages: Sequence[str] = ("prepare", "tokenize", "train"),
                 repo: str | Path | None = None) -> Path:
    """Build the sandbox under ``root`` (see the module docstring); returns ``root``.

    Args:
        overrides: extra dotted params overrides (on top of :data:`SHRINK`).
        settings: nested overrides of the settings file (on top of :data:`TINY_EVAL`).
        stages: pipeline stages to run (drop ``train`` for a project without a checkpoint).
        repo: where ``params.yaml`` and ``flows/ablations.yaml`` come from (default: this
            checkout).
    """
    from unmask.config import load_params, parse_overrides
    from unmask.stages import run_stage

    root, repo = Path(root).resolve(), Path(repo) if repo else _repo()
    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    deep_merge(params, parse_overrides({**SHRINK, **(overrides or {})}))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    flows = yaml.safe_load((repo / "flows/ablations.yaml").read_text())
    deep_merge(flows, TINY_EVAL)
    deep_merge(flows, dict(settings or {}))
    (root / "flows").mkdir(exist_ok=True)
    (root / "flows/ablations.yaml").write_text(yaml.safe_dump(flows, sort_keys=False))
    loaded = load_params(root / "params.yaml")
    with contextlib.chdir(root):
        for stage in stages:
            run_stage(stage, loaded)
    return root
