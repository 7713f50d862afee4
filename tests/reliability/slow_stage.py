"""A stage that writes part of its output and then hangs, to be SIGKILLed by a test.

    python slow_stage.py NAME [--params FILE] [--set ...]

Runs as stage NAME through :func:`unmask.stages.main` (so under the stage guard) in the
working directory:
writes ``samples/samples.npz`` (half of it), prints ``WROTE`` and sleeps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def _run(params) -> None:
    out = Path("samples")
    out.mkdir(exist_ok=True)
    (out / "samples.npz").write_bytes(b"PK\x03\x04 half a zip")
    print("WROTE", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    import importlib

    from unmask import stages
    from unmask.config import Params

    importlib.import_module(stages.module_of(sys.argv[1]))  # then replace the real stage
    stages.REGISTRY[sys.argv[1]] = stages.Stage(sys.argv[1], _run, Params)
    stages.main(sys.argv[1:])
