"""Helpers of the determinism tests (issue 22): compare two runs' outputs exactly."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch


def tree_digest(root: Path, *paths: str) -> dict[str, str]:
    """sha256 of every file under ``root/<path>`` (files or folders), keyed by relative path."""
    out: dict[str, str] = {}
    for rel in paths:
        p = root / rel
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        assert files, f"no output at {p}"
        for f in files:
            out[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def assert_same_files(a: Path, b: Path, *paths: str) -> None:
    """The files under ``paths`` are byte-identical in the two run folders ``a`` and ``b``."""
    da, db = tree_digest(a, *paths), tree_digest(b, *paths)
    assert da.keys() == db.keys()
    differ = sorted(k for k in da if da[k] != db[k])
    assert not differ, f"outputs differ between two runs: {differ}"


def _tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        out: dict[str, torch.Tensor] = {}
        for k, v in obj.items():
            out.update(_tensors(v, f"{prefix}/{k}"))
        return out
    if isinstance(obj, list | tuple):
        out = {}
        for i, v in enumerate(obj):
            out.update(_tensors(v, f"{prefix}/{i}"))
        return out
    return {}


def assert_same_tensors(a: Any, b: Any, *, at_least: int = 1) -> int:
    """Every tensor of the (nested) state ``a`` equals ``b``'s bit for bit; returns how many
    were compared (at least ``at_least``, so an empty state cannot pass)."""
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    assert len(ta) >= at_least, f"only {len(ta)} tensors to compare"
    worst = {k: float((ta[k].double() - tb[k].double()).abs().max()) if ta[k].numel() else 0.0
             for k in ta if ta[k].dtype.is_floating_point and not torch.equal(ta[k], tb[k])}
    other = [k for k in ta if not ta[k].dtype.is_floating_point and not torch.equal(ta[k], tb[k])]
    if worst or other:
        shown = sorted(worst.items(), key=lambda kv: -kv[1])[:5] if worst else other[:5]
        raise AssertionError(f"tensors differ: {len(worst) + len(other)} of {len(ta)}, "
                             f"e.g. (name, max |Δ|) {shown}")
    return len(ta)


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
