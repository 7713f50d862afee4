"""Where the eMIGM stages read and write inside a pipeline folder (``pipelines/emigm-default``,
``pipelines/imagenet256-emigm``; the stages run there): :data:`OUT` and the wall-clock records
:data:`TIMINGS`, plus the JSON writer of their DVC outputs. Kept apart from
:mod:`unmask.emigm.pipeline` so that ``emigm.prepare`` / ``emigm.tokenize-*`` do not import
(nor, in ``unmask dvc deps``, depend on) the models and the training loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

__all__ = ["Kind", "OUT", "TIMINGS", "write_json"]

Kind = Literal["discrete", "continuous"]
OUT = Path("out")  # a pipeline folder's outputs (the stages run there)
TIMINGS = OUT / "runs" / "timings"  # wall-clock records: no stage declares them (git-ignored)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as sorted, indented JSON (a stable DVC output: same values, same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
