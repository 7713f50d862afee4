"""Interrupted pipeline stages never pass for complete.

A DVC stage killed mid-way (SIGKILL, OOM, a lost node) may leave some of its outputs written
and others stale. ``dvc repro`` reruns it (``dvc.lock`` was not updated), but a stage run by
hand (``python -m unmask.stages <name>``, ``unmask stage <name>``) or a reader of the files
could take them for a finished result. :func:`stage_guard` closes that gap, with the stage's
``outs`` / ``metrics`` / ``plots`` and ``deps`` read from the ``dvc.yaml`` of the working
directory:

1. before the stage runs: every upstream stage (one whose outputs this stage depends on) must
   have completed; one marked *running* whose process is gone, or *failed*, is an
   :class:`IncompleteStageError` naming it and how to rerun it;
2. the stage is marked *running* (``.unmask/stages/<name>.json``: pid, start time, outputs)
   and its old outputs are deleted, as ``dvc repro`` does (outputs with ``persist: true`` are
   kept, and so are hidden ``.*.partial`` folders of resumable writes), so no stale file
   survives next to fresh ones;
3. on success the marker says *complete*; on an exception *failed* (with the error).

A stage killed in step 2 or 3 therefore leaves *running* with a dead pid: downstream stages
refuse to read its outputs until it is rerun. Without a ``dvc.yaml`` there is nothing to guard.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

__all__ = ["IncompleteStageError", "stage_guard", "stage_status", "stage_outputs", "MARKER_DIR"]

MARKER_DIR = Path(".unmask") / "stages"


class IncompleteStageError(ValueError):
    """An upstream stage was interrupted or failed: its outputs are not to be trusted."""


_VAR = re.compile(r"\$\{\s*([\w.-]+)\s*\}")


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            raise KeyError(dotted)
        tree = tree[part]
    return tree


def _interpolate(node: Any, scope: dict[str, Any]) -> Any:
    """``${a.b}`` in the strings of ``node`` replaced from ``scope`` (DVC's templating, the
    subset this project's dvc.yaml files use); an unknown name is left as written."""
    if isinstance(node, str):
        whole = _VAR.fullmatch(node.strip())
        if whole:
            try:
                return _lookup(scope, whole.group(1))
            except KeyError:
                return node

        def sub(m: re.Match[str]) -> str:
            try:
                return str(_lookup(scope, m.group(1)))
            except KeyError:
                return m.group(0)

        return _VAR.sub(sub, node)
    if isinstance(node, list):
        return [_interpolate(v, scope) for v in node]
    if isinstance(node, dict):
        return {_interpolate(k, scope): _interpolate(v, scope) for k, v in node.items()}
    return node


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return None


def _pipeline(root: Path) -> dict[str, dict[str, Any]]:
    """The stages of ``root/dvc.yaml`` with ``foreach`` expanded (``name@item`` for a list,
    ``name@key`` for a mapping) and ``${...}`` taken from ``root/params.yaml``."""
    doc = _load_yaml(root / "dvc.yaml")
    stages = doc.get("stages") if isinstance(doc, dict) else None
    if not isinstance(stages, dict):
        return {}
    params = _load_yaml(root / "params.yaml")
    params = params if isinstance(params, dict) else {}
    out: dict[str, dict[str, Any]] = {}
    for name, st in stages.items():
        if not isinstance(st, dict):
            continue
        if "foreach" not in st or not isinstance(st.get("do"), dict):
            out[name] = _interpolate(st, params)
            continue
        items = _interpolate(st["foreach"], params)
        pairs = items.items() if isinstance(items, dict) else (
            ((str(i), i) for i in items) if isinstance(items, list) else ())
        for key, item in pairs:
            out[f"{name}@{key}"] = _interpolate(st["do"], {**params, "item": item, "key": key})
    return out


def _paths(entries: Any) -> list[tuple[str, dict[str, Any]]]:
    """``[path, {path: {opts}}]`` entries of a dvc.yaml list → [(path, opts)]."""
    out: list[tuple[str, dict[str, Any]]] = []
    for e in entries or []:
        if isinstance(e, str):
            out.append((e, {}))
        elif isinstance(e, dict):
            out += [(str(k), v if isinstance(v, dict) else {}) for k, v in e.items()]
    return out


def _find(
    stages: dict[str, dict[str, Any]], name: str, options: dict[str, Any] | None = None
) -> str | None:
    """The dvc.yaml stage that runs stage ``name`` with ``options``: the one so named, else the
    one stage whose ``cmd`` is ``python -m unmask.stages <name>`` with these ``--option value``
    words (``foreach`` stages expanded); none when that is ambiguous."""
    if name in stages:
        return name
    want = {(f"--{k.replace('_', '-')}", str(v)) for k, v in (options or {}).items()}
    hits = []
    for key, st in stages.items():
        words = str(st.get("cmd", "")).split()
        for i in range(len(words) - 1):
            if words[i] == "unmask.stages" and words[i + 1] == name:
                args = words[i + 2:]
                given = set(zip(args, args[1:], strict=False))
                given |= {tuple(a.split("=", 1)) for a in args if a.startswith("--") and "=" in a}
                if want <= given:
                    hits.append(key)
    return hits[0] if len(hits) == 1 else None


def stage_outputs(
    name: str, root: str | Path = ".", options: dict[str, Any] | None = None
) -> list[tuple[Path, bool]]:
    """[(path, persist)] of the outputs of stage ``name`` (with ``options``) in
    ``root/dvc.yaml``."""
    root = Path(root)
    stages = _pipeline(root)
    key = _find(stages, name, options)
    if key is None:
        return []
    st = stages[key]
    return [
        (root / p, bool(o.get("persist", False)))
        for section in ("outs", "metrics", "plots")
        for p, o in _paths(st.get(section))
    ]


def _upstream(
    name: str, root: Path, options: dict[str, Any] | None = None
) -> list[tuple[str, list[str]]]:
    """[(stage, [its outputs this stage reads])] for the stages upstream of ``name``."""
    stages = _pipeline(root)
    key = _find(stages, name, options)
    if key is None:
        return []
    deps = [Path(p) for p, _ in _paths(stages[key].get("deps"))]
    found = []
    for other, st in stages.items():
        if other == key:
            continue
        outs = [Path(p) for s in ("outs", "metrics", "plots") for p, _ in _paths(st.get(s))]
        used = [
            str(o) for o in outs if any(d == o or o in d.parents or d in o.parents for d in deps)
        ]
        if used:
            found.append((other, used))
    return found


def _marker(name: str, root: Path) -> Path:
    return root / MARKER_DIR / f"{name}.json"


def _write(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stage_status(name: str, root: str | Path = ".") -> str | None:
    """``complete``, ``failed``, ``running``, ``interrupted`` (running, process gone) or None
    (never run under the guard)."""
    path = _marker(name, Path(root))
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    status = state.get("status") if isinstance(state, dict) else None
    if status == "running" and not _alive(int(state.get("pid", -1))):
        return "interrupted"
    return status if isinstance(status, str) else None


def _check_upstream(name: str, root: Path, options: dict[str, Any] | None = None) -> None:
    for other, used in _upstream(name, root, options):
        status = stage_status(other, root)
        if status in (None, "complete"):
            continue
        what = {
            "interrupted": "was interrupted",
            "running": "is still running",
            "failed": "failed",
        }.get(status, status)
        raise IncompleteStageError(
            f"stage {other!r} {what}, so its outputs ({', '.join(used)}) may be half-written; "
            f"rerun it first (`dvc repro {other}`) before {name!r}"
        )


def _remove(path: Path) -> None:
    """Delete an output; in a folder, hidden ``.*.partial`` entries survive (a resumable
    write in progress, e.g. a token shard's, which no reader takes for complete)."""
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            if child.name.startswith(".") and child.name.endswith(".partial"):
                continue
            _remove(child)
        if not any(path.iterdir()):
            path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def stage_guard(
    name: str, root: str | Path = ".", options: dict[str, Any] | None = None
) -> Iterator[None]:
    """Run the body as stage ``name`` (with its command-line ``options``, which pick one stage
    of a ``foreach``) under the protocol of the module docstring."""
    root = Path(root)
    key = _find(_pipeline(root), name, options)
    if key is None:
        yield
        return
    _check_upstream(name, root, options)
    outputs = stage_outputs(name, root, options)
    marker = _marker(key, root)  # by dvc.yaml key (joint.train runs `train`): what upstream reads
    state = {
        "stage": key,
        "status": "running",
        "pid": os.getpid(),
        "started": time.time(),
        "outputs": [os.path.relpath(p, root) for p, _ in outputs],
    }
    _write(marker, state)
    for path, persist in outputs:
        if not persist:
            _remove(path)
    try:
        yield
    except BaseException as e:
        _write(
            marker,
            {
                **state,
                "status": "failed",
                "ended": time.time(),
                "error": f"{type(e).__name__}: {e}"[:2000],
            },
        )
        raise
    _write(marker, {**state, "status": "complete", "ended": time.time()})
