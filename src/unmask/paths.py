"""Where a path in params points: the one place relative paths are resolved.

A pipeline's params file (``params.yaml`` at the repo root, or ``pipelines/<exp>/params.yaml``)
names files relative to its *project root*, the folder holding that params file and its
``dvc.yaml`` (DVC runs each stage with that folder as the working directory). Code that runs
elsewhere — a Ray Tune trial (Tune moves a trial into its own folder), a Ray Train worker, a
Prefect flow run started from another directory — must not read those paths against its own
working directory. It gets the root explicitly and calls:

- :func:`project_root` — the root of a params file;
- :func:`resolve` — one path against a root (absolute paths and ``~`` stay as they are);
- :func:`resolve_params` — a params object whose path fields (:func:`is_path_field`) are
  absolute;
- :func:`producing_stage` / :func:`require` — a missing input becomes one error naming the file
  and the DVC stage that writes it, before any work starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

__all__ = ["MissingInputError", "project_root", "resolve", "is_path_field", "resolve_params",
           "producing_stage", "require"]


class MissingInputError(FileNotFoundError):
    """A pipeline input is missing (one line: the file and the stage that makes it)."""


def project_root(params_path: str | Path) -> Path:
    """The project root of ``params_path``: the absolute folder that holds it."""
    return Path(params_path).expanduser().resolve().parent


def resolve(path: str | Path, root: str | Path) -> Path:
    """``path`` if absolute (after ``~`` expansion), else ``root / path``; never the cwd."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(root).expanduser().resolve() / p


def is_path_field(name: str) -> bool:
    """Whether a params field holds a path: named ``path``/``root``/``dir`` or ending in
    ``_path``/``_root``/``_dir`` (e.g. ``tokenizer.path``, ``data.root``, ``tracking.root``)."""
    return name in ("path", "root", "dir") or name.endswith(("_path", "_root", "_dir"))


def _resolve_model(obj: Any, root: Path) -> Any:
    if not isinstance(obj, BaseModel):
        return obj
    update: dict[str, Any] = {}
    for name in type(obj).model_fields:
        value = getattr(obj, name)
        if isinstance(value, BaseModel):
            new = _resolve_model(value, root)
            if new is not value:
                update[name] = new
        elif is_path_field(name) and isinstance(value, str | Path) and str(value):
            new_path = resolve(value, root)
            if str(new_path) != str(value):
                update[name] = str(new_path) if isinstance(value, str) else new_path
    # model_copy skips validation: a validator that derives fields must not re-run on paths.
    return obj.model_copy(update=update) if update else obj


def resolve_params(params: Any, root: str | Path) -> Any:
    """A copy of a validated params object (any pydantic model tree) with every path field
    (:func:`is_path_field`) made absolute against ``root``; other values are untouched."""
    return _resolve_model(params, Path(root).expanduser().resolve())


def producing_stage(path: str | Path, root: str | Path) -> str | None:
    """The name of the stage of ``<root>/dvc.yaml`` whose ``outs`` contain ``path`` (or a folder
    above it), or None when no stage writes it (or there is no dvc.yaml)."""

    root = Path(root).resolve()
    dvcfile = root / "dvc.yaml"
    if not dvcfile.is_file():
        return None
    try:
        stages = (yaml.safe_load(dvcfile.read_text()) or {}).get("stages") or {}
    except yaml.YAMLError:
        return None
    target = resolve(path, root)
    for name, stage in stages.items():
        if not isinstance(stage, dict) or "foreach" in stage:
            continue
        for out in stage.get("outs") or []:
            out_path = next(iter(out)) if isinstance(out, dict) else out
            o = resolve(str(out_path), root)
            if target == o or o in target.parents:
                return str(name)
    return None


def require(paths: Iterable[tuple[str | Path, str]], root: str | Path) -> None:
    """Raise :class:`MissingInputError` for the first ``(path, what)`` that does not exist:
    ``<path>: <what> not found — run `dvc repro <stage>` in <root>`` (stage from dvc.yaml)."""
    root = Path(root).resolve()
    for path, what in paths:
        p = resolve(path, root)
        if p.exists():
            continue
        stage = producing_stage(p, root)
        how = (f"run `dvc repro {stage}` in {root} (the '{stage}' stage writes it)" if stage
               else f"no stage of {root / 'dvc.yaml'} writes it")
        raise MissingInputError(f"{p}: {what} not found; {how}")
