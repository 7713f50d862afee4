"""Load a script of ``benchmarks/`` as a module (they are scripts, not a package)."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench_module():
    def load(name: str):
        if str(BENCHMARKS) not in sys.path:  # the scripts import each other by name
            sys.path.insert(0, str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up while being built
        spec.loader.exec_module(mod)
        return mod

    return load
