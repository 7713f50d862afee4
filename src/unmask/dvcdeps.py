"""The ``unmask`` source files each DVC stage runs, from its import closure, against its ``deps``.

A stage's ``cmd`` names its entry modules (``python -m unmask.stages train``: the runner and the
module that registers ``train``). The code that stage runs is their *import closure*: the
``unmask`` modules that importing them loads (found in a fresh interpreter) plus, followed
transitively, every ``unmask`` module named by an ``import`` anywhere in those files — also inside
functions, where this code base imports lazily (the static part; ``if TYPE_CHECKING:`` blocks are
skipped) — plus the non-Python files (e.g. ``reporting/references.yaml``) beside them. A change to
any of these files must rerun the stage, so each must be covered by one of the stage's ``deps``
(the file or a folder above it).

    unmask dvc deps --check [dvc.yaml ...]   # exit 1 naming missing (or absent) source deps
    unmask dvc deps --write [dvc.yaml ...]   # rewrite the source part of every deps list
    unmask dvc deps [dvc.yaml ...]           # print the deps each stage should have

``--write`` edits only the ``src/unmask`` entries of each ``deps:`` list (data deps and the rest
of the file are kept byte for byte). In the root project a folder all of whose files are in the
closure is written as the folder; in a pipeline project (``pipelines/<exp>/``, its own DVC
project) the source tree lies outside the project, DVC's ``.dvcignore`` does not apply there and
a folder dep would hash ``__pycache__``, so sources are listed file by file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
import yaml

from unmask.runtime import closure_files, module_name
from unmask.stages import module_of

PACKAGE = "unmask"
#: The repository root (this file is ``<root>/src/unmask/dvcdeps.py``).
ROOT = Path(__file__).resolve().parents[2]
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass
class Stage:
    """One stage (a ``foreach`` group counts once: its ``do`` template's deps are shared)."""

    dvcfile: Path
    name: str
    cmd: str
    deps: list[str]
    #: (first, last) 0-based line numbers of the ``deps`` items in ``dvcfile``; None without deps
    lines: tuple[int, int] | None = None
    indent: str = ""
    wdir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.wdir = self.dvcfile.parent

    @property
    def label(self) -> str:
        return f"{self.dvcfile}:{self.name}"


def dvc_files(root: Path = ROOT) -> list[Path]:
    """The root ``dvc.yaml`` and every ``pipelines/*/dvc.yaml``."""
    files = [root / "dvc.yaml"] if (root / "dvc.yaml").is_file() else []
    return files + sorted((root / "pipelines").glob("*/dvc.yaml"))


def _node_get(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    for k, v in node.value:
        if k.value == key:
            return v
    return None


def load_stages(dvcfile: Path) -> list[Stage]:
    """The stages of ``dvcfile`` with their ``cmd``, ``deps`` and the deps' line span."""
    text = dvcfile.read_text()
    root = yaml.compose(text)
    stages = _node_get(root, "stages") if isinstance(root, yaml.MappingNode) else None
    if not isinstance(stages, yaml.MappingNode):
        raise ValueError(f"{dvcfile}: no 'stages' mapping")
    out = []
    lines = text.splitlines()
    for key, body in stages.value:
        name = key.value
        if not isinstance(body, yaml.MappingNode):
            raise ValueError(f"{dvcfile}: stage {name!r} is not a mapping")
        if _node_get(body, "foreach") is not None:
            body, name = _node_get(body, "do"), f"{name}@*"
            if not isinstance(body, yaml.MappingNode):
                raise ValueError(f"{dvcfile}: stage {name!r} has 'foreach' without a 'do' mapping")
        cmd = _node_get(body, "cmd")
        if not isinstance(cmd, yaml.ScalarNode):
            raise ValueError(f"{dvcfile}: stage {name!r} has no single-string 'cmd'")
        deps_node = _node_get(body, "deps")
        deps: list[str] = []
        span, indent = None, ""
        if isinstance(deps_node, yaml.SequenceNode) and deps_node.value:
            for item in deps_node.value:
                if not isinstance(item, yaml.ScalarNode):
                    raise ValueError(f"{dvcfile}: stage {name!r}: deps entries must be strings")
                deps.append(item.value)
            first = deps_node.value[0].start_mark.line
            last = deps_node.value[-1].end_mark.line
            span = (first, last)
            indent = re.match(r"\s*", lines[first]).group(0)  # type: ignore[union-attr]
        out.append(Stage(dvcfile, name, cmd.value, deps, span, indent))
    return out


_ENTRY = re.compile(r"(?:^|[\s;&|(])python[\d.]*\s+-m\s+([\w.]+)(?:\s+([\w.-]+))?")
_CLI = re.compile(r"(?:^|[\s;&|(])unmask(?:\s|$)")
_RUNNER = f"{PACKAGE}.stages"


def entry_modules(stage: Stage) -> list[str]:
    """The modules the stage's ``cmd`` runs: ``python -m unmask.stages NAME`` → the runner and
    the module registering ``NAME`` (:func:`unmask.stages.module_of`); ``python -m <module>``;
    or the ``unmask`` CLI."""
    m = _ENTRY.search(stage.cmd)
    if m and m.group(1) == _RUNNER and m.group(2):
        return [f"{_RUNNER}.__main__", module_of(m.group(2))]
    if m:
        return [m.group(1)]
    if _CLI.search(stage.cmd):
        return [f"{PACKAGE}.cli"]
    raise ValueError(f"{stage.label}: cannot find the entry module in cmd {stage.cmd!r} "
                     f"(expected 'python -m unmask.stages NAME', 'python -m <module>' or "
                     f"'unmask ...')")


def stage_closure(stage: Stage, root: Path = ROOT) -> frozenset[Path]:
    """:func:`closure` of every entry module of ``stage``."""
    return frozenset().union(*(closure(m, root) for m in entry_modules(stage)))


def _src_dir(root: Path) -> Path:
    return root / "src" / PACKAGE


_IMPORT_SNIPPET = (
    "import importlib, json, sys\n"
    "importlib.import_module(sys.argv[1])\n"
    "mods = list(sys.modules.values())\n"
    "print(json.dumps(sorted({getattr(m, '__file__', None) or '' for m in mods})))\n"
)


def imported_files(module: str, root: Path = ROOT) -> set[Path]:
    """Files of ``root/src/unmask`` that importing ``module`` loads, in a fresh interpreter
    (``root/src`` first on ``sys.path``, no bytecode written)."""
    src = _src_dir(root)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _IMPORT_SNIPPET, module], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"import {module} failed: {tail[0]}")
    files = {Path(f).resolve() for f in json.loads(proc.stdout.strip().splitlines()[-1]) if f}
    return {f for f in files if f.is_relative_to(src)}


def static_closure(files: Iterable[Path], root: Path = ROOT) -> set[Path]:
    """``files`` plus every ``unmask`` module reachable through their imports (any scope), with
    the ``__init__.py`` of each package on the way, and the package data beside them — the one
    walker :func:`unmask.runtime.closure_files` that the run-key code fingerprint also hashes."""
    src = _src_dir(root)
    return set(closure_files([module_name(f, src) for f in files], src))


@functools.cache
def closure(module: str, root: Path = ROOT) -> frozenset[Path]:
    """All ``src/unmask`` files that running ``module`` may execute or read (see module doc);
    cached per process (an import in a fresh interpreter takes seconds)."""
    return frozenset(static_closure(imported_files(module, root), root))


def _resolve(dep: str, stage: Stage) -> Path | None:
    """A dep path as an absolute path (None for templated ``${...}`` deps)."""
    if "${" in dep:
        return None
    p = Path(dep)
    return Path(os.path.normpath(p if p.is_absolute() else stage.wdir.resolve() / p))


def missing_deps(stage: Stage, files: Iterable[Path]) -> list[Path]:
    """Files of ``files`` covered by none of the stage's deps (a dep covers itself and, if a
    folder, everything below it)."""
    deps = [d for d in (_resolve(x, stage) for x in stage.deps) if d is not None]
    return sorted(f for f in files if not any(f == d or d in f.parents for d in deps))


def absent_src_deps(stage: Stage, root: Path = ROOT) -> list[str]:
    """The stage's ``src/unmask`` deps that do not exist (a renamed or uncommitted module):
    ``dvc repro`` would fail on them."""
    return [d for d in stage.deps
            if _is_src_dep(d, stage, root) and not _resolve(d, stage).exists()]  # type: ignore[union-attr]


def _all_files(d: Path) -> set[Path]:
    return {p.resolve() for p in d.rglob("*") if p.is_file()
            and not _SKIP_DIRS.intersection(p.relative_to(d).parts)
            and p.suffix not in _SKIP_SUFFIXES}


def _compress(files: AbstractSet[Path], d: Path) -> list[Path]:
    """``files`` (all under folder ``d``) as folders where a whole folder is in ``files``."""
    if _all_files(d) <= files:
        return [d]
    out: list[Path] = []
    for child in sorted(d.iterdir()):
        if child.name in _SKIP_DIRS:
            continue
        if child.is_dir():
            if any(f.is_relative_to(child) for f in files):
                out += _compress(files, child)
        elif child.resolve() in files:
            out.append(child)
    return out


def _in_project(stage: Stage, root: Path) -> bool:
    """Whether the source tree lies inside the DVC project of ``stage`` (so ``.dvcignore``
    applies to folder deps): the project is the nearest folder above the stage with ``.dvc/``."""
    d = stage.wdir.resolve()
    while not (d / ".dvc").is_dir() and d != d.parent:
        d = d.parent
    return _src_dir(root).is_relative_to(d)


def suggested_src_deps(stage: Stage, files: AbstractSet[Path], root: Path = ROOT) -> list[str]:
    """The ``src/unmask`` deps the stage should list, relative to its ``wdir``."""
    src = _src_dir(root)
    paths = _compress(files, src) if _in_project(stage, root) else sorted(files)
    base = stage.wdir.resolve()
    return [os.path.relpath(p, base) for p in paths]


def _is_src_dep(dep: str, stage: Stage, root: Path) -> bool:
    p = _resolve(dep, stage)
    return p is not None and (p == _src_dir(root) or p.is_relative_to(_src_dir(root)))


def write_deps(dvcfile: Path, root: Path = ROOT) -> list[str]:
    """Rewrite the ``src/unmask`` entries of every stage's deps in ``dvcfile`` from the import
    closures (sorted, first); other entries keep their lines. Returns the changed stages."""
    lines = dvcfile.read_text().splitlines(keepends=True)
    changed = []
    # bottom-up so earlier line numbers stay valid
    for stage in sorted(load_stages(dvcfile), key=lambda s: -(s.lines or (-1, -1))[0]):
        if stage.lines is None:
            raise ValueError(f"{stage.label}: no deps list to write into (add one with the "
                             f"stage's entry script)")
        files = stage_closure(stage, root)
        first, last = stage.lines
        kept = [ln for ln in lines[first:last + 1]
                if ln.strip().startswith("-")
                and not _is_src_dep(ln.strip()[1:].split("#")[0].strip().strip("'\""),
                                    stage, root)]
        new = [f"{stage.indent}- {p}\n" for p in suggested_src_deps(stage, files, root)] + kept
        if new != lines[first:last + 1]:
            lines[first:last + 1] = new
            changed.append(stage.label)
    if changed:
        dvcfile.write_text("".join(lines))
    return changed[::-1]  # in file order


dvc_app = typer.Typer(help="DVC helpers: stage deps from the import closure.",
                      no_args_is_help=True, add_completion=False)


@dvc_app.command("deps")
def deps_command(
    files: Annotated[list[Path] | None, typer.Argument(help="dvc.yaml files (default all)")] = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if a stage misses deps.")] = False,
    write: Annotated[bool, typer.Option("--write", help="Rewrite the src deps lists.")] = False,
) -> None:
    """Compare (--check), rewrite (--write) or print each stage's ``src/unmask`` deps."""
    targets = [f.resolve() for f in files] if files else dvc_files(ROOT)
    bad = 0
    for dvcfile in targets:
        if not dvcfile.is_file():
            typer.echo(f"error: {dvcfile}: no such dvc.yaml", err=True)
            raise typer.Exit(2)
        if write:
            for label in write_deps(dvcfile):
                typer.echo(f"updated {label}")
            continue
        for stage in load_stages(dvcfile):
            files_ = stage_closure(stage)
            if check:
                for f in missing_deps(stage, files_):
                    bad += 1
                    typer.echo(f"{stage.label}: missing dep {os.path.relpath(f, stage.wdir)}")
                for d in absent_src_deps(stage):
                    bad += 1
                    typer.echo(f"{stage.label}: dep {d} does not exist")
            else:
                typer.echo(f"{stage.label}:")
                for p in suggested_src_deps(stage, files_):
                    typer.echo(f"  - {p}")
    if bad:
        typer.echo(f"{bad} missing or absent deps; run `unmask dvc deps --write`", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":  # python -m unmask.dvcdeps --check
    dvc_app()
